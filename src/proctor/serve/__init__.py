"""`proctor serve`: an OpenAI-compatible HTTP server over a local model.

Modules: `cli` (arguments, entry point; light imports), `options` (the parsed
settings), `batcher` (groups concurrent requests into one backend call),
`prompter` (tokenizer-side work: chat templates, token counts), `protocol`
(OpenAI request/response shapes and errors), `app` (the FastAPI app),
`server` (model + uvicorn lifecycle), `external` (vLLM / LMDeploy servers).
"""
