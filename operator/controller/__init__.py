"""The backend-agnostic reconcile loop and the protocols backends implement for it."""
