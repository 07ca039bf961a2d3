"""Accounts and the contact graph: who a member is, how they sign in, and whom they know."""
