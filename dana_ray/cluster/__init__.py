"""What a sweep asks of the Ray cluster it runs on: resources to size trials to, and the data on each node."""
