"""SASL mechanisms that need more than a line or two: NTLM, GSSAPI, XOAUTH2."""
