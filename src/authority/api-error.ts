/** An error the API turns into `{"error": code, "detail": message}` with an HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    detail: string,
  ) {
    super(detail);
    this.name = 'ApiError';
  }
}

export const badRequest = (detail: string): ApiError => new ApiError(400, 'bad_request', detail);
export const notFound = (detail: string): ApiError => new ApiError(404, 'not_found', detail);
export const conflict = (detail: string): ApiError => new ApiError(409, 'conflict', detail);
export const forbidden = (detail: string): ApiError => new ApiError(403, 'forbidden', detail);
