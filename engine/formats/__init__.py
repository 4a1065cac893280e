"""Dataset formats other than SA-1B (which lives in ``engine.sa1b``): one converter per format,
shared by exports, imports and the Label Studio sync."""
