"""Profile preferences (``profile_settings``) and the boundary that keeps secrets out of them."""
