"""Admin of the backups app."""
