"""Test helpers: real registries, a token server, image builders, skopeo and a fault proxy."""
