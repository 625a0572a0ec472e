using MedServe.Protocol;
using Microsoft.AspNetCore.Http;

namespace MedServe.Dashboard.Management;

/// <summary>MedServe errors as the management API answers them: problem+json naming the field (statuses from <see cref="ErrorStatus"/>).</summary>
public static class HttpErrors
{
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
        statusCode: ErrorStatus.Of(e.Kind),
        title: ErrorStatus.TitleOf(e.Kind),
        extensions: e.Field is null ? null : new Dictionary<string, object?> { ["field"] = e.Field });
}
