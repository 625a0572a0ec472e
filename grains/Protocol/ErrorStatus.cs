namespace MedServe.Protocol;

/// <summary>
/// The HTTP status and title of each <see cref="ErrorKind"/>: one mapping for every HTTP front end (V2's
/// <c>{"error"}</c>, the management API's problem+json, the web app's messages).
/// </summary>
public static class ErrorStatus
{
    public static int Of(ErrorKind kind) => kind switch
    {
        ErrorKind.InvalidInput => 400,
        ErrorKind.NotFound => 404,
        ErrorKind.Conflict => 409,
        ErrorKind.NotReady => 503,
        ErrorKind.TooLarge => 413,
        ErrorKind.Overloaded => 429,
        ErrorKind.Timeout => 504,
        ErrorKind.Forbidden => 403,
        ErrorKind.UnsupportedMediaType => 415,
        ErrorKind.Unavailable => 503,
        _ => 500,
    };

    public static string TitleOf(ErrorKind kind) => kind switch
    {
        ErrorKind.InvalidInput => "Invalid input",
        ErrorKind.NotFound => "Not found",
        ErrorKind.Conflict => "Conflict",
        ErrorKind.NotReady => "Not ready",
        ErrorKind.TooLarge => "Payload too large",
        ErrorKind.Overloaded => "Too many requests",
        ErrorKind.Timeout => "Timed out",
        ErrorKind.Forbidden => "Forbidden",
        ErrorKind.UnsupportedMediaType => "Unsupported media type",
        ErrorKind.Unavailable => "Service unavailable",
        _ => "Server error",
    };
}
