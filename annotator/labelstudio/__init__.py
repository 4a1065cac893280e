"""The link to Label Studio: Maskmill as its ML backend, and syncing tasks and annotations both
ways."""
