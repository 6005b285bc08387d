"""Services: the registry's rules (push, pull, tag, delete), above storage and below HTTP."""
