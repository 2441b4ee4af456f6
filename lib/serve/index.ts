// `rift serve` as a library: an OpenAI-compatible HTTP server on the engine.
//
//   server.ts      startServer(): node:http, routes, SSE streaming, the 429 queue, graceful close()
//   validate.ts    request bodies → GenerationRequest (prompt ids, checked parameters) or OpenAI-style 4xx errors
//   generation.ts  runGeneration(): generate() observed token by token (streamed text, log-probs, stop strings)
//   responses.ts   text_completion / chat.completion bodies and stream chunks
//   queue.ts       EngineQueue: one generation at a time, a bounded wait list
//   logprobs.ts    per-token log-probs and top alternatives from a logits row
//   errors.ts      ApiError: {"error": {message, type, param, code}} with its HTTP status
export { startServer } from './server';
export type { ServeOptions, RiftServer, ServerStats } from './server';
export { parseRequest, renderChat, COMPLETION_DEFAULT_MAX_TOKENS } from './validate';
export type { GenerationRequest, ServeContext } from './validate';
export { runGeneration, GenerationAborted } from './generation';
export type { ServeModel, ChoiceResult, ChoiceDelta, GenerationResult, RunOptions } from './generation';
export { EngineQueue, QueueFullError, QueueClosedError } from './queue';
export { ApiError } from './errors';
export { tokenLogprob, rowLogSumExp, topIds } from './logprobs';
export type { TokenLogprob } from './logprobs';
