"""OCI distribution: reference grammar and protocol (pure), authentication, and the httpx client."""
