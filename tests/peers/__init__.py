"""Real peers the tests start on loopback: SMTP servers, certificates, databases."""
