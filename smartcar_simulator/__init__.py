"""A local Smartcar: the API, Connect, webhooks and control endpoints, for tests, demos and benchmarks."""
