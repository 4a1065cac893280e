"""Projects, their labels and memberships, and who may reach what (``access``): every object is
reached through its project."""
