// OpenAI-style errors of `rift serve`: every failure a client can cause or meet is an ApiError, sent as
// {"error": {"message", "type", "param", "code"}} with its HTTP status (the body the official clients parse).
export type ApiErrorType = 'invalid_request_error' | 'not_found_error' | 'rate_limit_error' | 'server_error';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType = status === 404
      ? 'not_found_error'
      : status === 429
        ? 'rate_limit_error'
        : status >= 500
          ? 'server_error'
          : 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  body(): { error: { message: string; type: ApiErrorType; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A 400 about request field `param` (the message starts with it, as rift's TypeErrors/RangeErrors do). */
export function badParam(param: string, message: string, code: string | null = 'invalid_value'): ApiError {
  return new ApiError(400, `${param}: ${message}`, 'invalid_request_error', param, code);
}

/** Anything thrown that is not an ApiError becomes a 500 that names what failed (no stack to the client). */
export function asApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new ApiError(500, `internal error: ${msg}`, 'server_error', null, 'internal_error');
}
