"""The daemon side: observe through adapters, load desired state, execute plans, report."""
