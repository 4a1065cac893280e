"""Export jobs of a project's dataset (SA-1B shards, COCO, Label Studio, PNG masks) and their
manifests: the last step of the loop."""
