"""Admin of the deployments app."""
