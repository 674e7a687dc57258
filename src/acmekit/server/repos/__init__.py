"""The CA's repositories: one per aggregate, all over one `Database` (repos/base.py)."""
