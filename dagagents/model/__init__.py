"""The model: what a graph IS — node specs, agents, tools, plans, the orchestrator's shape.

Data and validation only; nothing here runs a node, opens a store or makes a call.
May import: `dagagents.errors`, `dagagents.providers` (request/usage types and the simulator an
offline graph carries), `dagagents.store.codec` (how outputs become prompt text).
Must not import: `engine`, `observe`, `cli`.
"""
