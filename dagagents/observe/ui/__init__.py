"""The live local web view: a Starlette app serving one page per run over server-sent events.

Feeds: an in-process run (`dagagents run --ui`) through the same tracer listener the trace
uses (`LiveRun`), or any run in a store by tailing its `trace.jsonl` (`dagagents ui`). Every
asset ships in `static/`; the page loads nothing from the network. Serves on 127.0.0.1 unless
asked, and then only with a token. Needs the `ui` extra (starlette, uvicorn, sse-starlette).
"""
