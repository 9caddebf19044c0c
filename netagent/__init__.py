"""netagent package."""
