"""OAuth 2.0 for XOAUTH2: token refresh, the connect flow, the token endpoint client."""
