using Microsoft.AspNetCore.Http;

namespace MedServe.Dashboard.Management;

/// <summary>How MedServe errors become HTTP answers: problem+json on the management API, <c>{"error"}</c> on V2.</summary>
public static class HttpErrors
{
    public static int StatusOf(ErrorKind kind) => kind switch
    {
        ErrorKind.InvalidInput => StatusCodes.Status400BadRequest,
        ErrorKind.NotFound => StatusCodes.Status404NotFound,
        ErrorKind.Conflict => StatusCodes.Status409Conflict,
        ErrorKind.NotReady => StatusCodes.Status503ServiceUnavailable,
        ErrorKind.TooLarge => StatusCodes.Status413PayloadTooLarge,
        ErrorKind.Overloaded => StatusCodes.Status429TooManyRequests,
        ErrorKind.Timeout => StatusCodes.Status504GatewayTimeout,
        _ => StatusCodes.Status500InternalServerError,
    };

    /// <summary>As <see cref="Problem(MedServeException)"/>, with <c>Retry-After: 1</c> when the error is retryable.</summary>
    public static IResult Problem(MedServeException e, HttpContext context)
    {
        if (e.IsRetryable)
        {
            context.Response.Headers.RetryAfter = "1";
        }
        return Problem(e);
    }

    /// <summary>A problem+json answer that names the offending field in <c>field</c>.</summary>
    public static IResult Problem(MedServeException e) => Results.Problem(
        detail: e.Message,
        statusCode: StatusOf(e.Kind),
        title: TitleOf(e.Kind),
        extensions: e.Field is null ? null : new Dictionary<string, object?> { ["field"] = e.Field });

    private static string TitleOf(ErrorKind kind) => kind switch
    {
        ErrorKind.InvalidInput => "Invalid input",
        ErrorKind.NotFound => "Not found",
        ErrorKind.Conflict => "Conflict",
        ErrorKind.NotReady => "Not ready",
        ErrorKind.TooLarge => "Payload too large",
        ErrorKind.Overloaded => "Too many requests",
        ErrorKind.Timeout => "Timed out",
        _ => "Server error",
    };
}
