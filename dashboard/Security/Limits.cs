using System.Globalization;
using System.Threading.RateLimiting;
using MedServe.Dashboard.Management;
using MedServe.Protocol;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace MedServe.Dashboard.Security;

/// <summary>
/// Limits against oversized and hostile input (<see cref="LimitsOptions"/>, section <c>MedServe:Limits</c>): a body
/// size per endpoint group (413) and a request rate per key (429 + <c>Retry-After</c>), with ASP.NET Core's rate limiter.
/// Answers are V2's <c>{"error"}</c> under <c>/v2</c> and problem+json elsewhere, each naming the limit and its setting.
/// </summary>
public static class Limits
{
    /// <summary>Rate limiting policy of the V2 endpoints (infer, metadata, readiness; not the health probes).</summary>
    public const string InferPolicy = "medserve-infer";

    /// <summary>Rate limiting policy of the management API and its OpenAPI document.</summary>
    public const string ManagementPolicy = "medserve-management";

    public static IServiceCollection AddMedServeLimits(this IServiceCollection services)
    {
        services.AddOptions<LimitsOptions>().BindConfiguration(LimitsOptions.Section);
        services.AddRateLimiter(o =>
        {
            o.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            o.AddPolicy(InferPolicy, context =>
            {
                var limits = context.RequestServices.GetRequiredService<IOptions<LimitsOptions>>().Value;
                return Partition(context, limits.InferPerSecond, limits.InferBurst);
            });
            o.AddPolicy(ManagementPolicy, context =>
            {
                var limits = context.RequestServices.GetRequiredService<IOptions<LimitsOptions>>().Value;
                return Partition(context, limits.ManagementPerSecond, limits.ManagementBurst);
            });
            o.OnRejected = RejectedAsync;
        });
        return services;
    }

    /// <summary>Whose budget a request spends: its key's id (a bearer key or a signed-in session), else its remote address.</summary>
    public static string PartitionKey(HttpContext context) =>
        context.User.FindFirst(MedServeClaims.KeyId)?.Value is { Length: > 0 } key
            ? "key:" + key
            : "ip:" + (context.Connection.RemoteIpAddress?.ToString() ?? "unknown");

    private static readonly RateLimitPartition<string> Unlimited = RateLimitPartition.GetNoLimiter("unlimited");

    private static RateLimitPartition<string> Partition(HttpContext context, int perSecond, int burst)
    {
        if (perSecond <= 0)
        {
            // No limit: one shared partition, and no per-request key to build.
            return Unlimited;
        }
        var key = PartitionKey(context);
        // A token bucket per key: a burst of up to 'burst' requests, refilled at 'perSecond' (a tenth of a second at a
        // time, so a key over its rate waits a fraction of a second, not a whole one).
        return RateLimitPartition.GetTokenBucketLimiter(key, _ => new TokenBucketRateLimiterOptions
        {
            TokenLimit = burst > 0 ? burst : perSecond,
            TokensPerPeriod = Math.Max(1, perSecond / 10),
            ReplenishmentPeriod = TimeSpan.FromSeconds(Math.Max(1, perSecond / 10) / (double)perSecond),
            QueueLimit = 0,
            AutoReplenishment = true,
        });
    }

    private static async ValueTask RejectedAsync(OnRejectedContext rejected, CancellationToken ct)
    {
        var context = rejected.HttpContext;
        var limits = context.RequestServices.GetRequiredService<IOptions<LimitsOptions>>().Value;
        var seconds = rejected.Lease.TryGetMetadata(MetadataName.RetryAfter, out var after)
            ? Math.Max(1, (int)Math.Ceiling(after.TotalSeconds))
            : 1;
        context.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
        var v2 = context.Request.Path.StartsWithSegments("/v2");
        var (rate, setting) = v2 ? (limits.InferPerSecond, "InferPerSecond") : (limits.ManagementPerSecond, "ManagementPerSecond");
        var who = context.User.FindFirst(MedServeClaims.KeyId)?.Value is { Length: > 0 } id ? $"key {id}" : "this address";
        var error = new MedServeException(ErrorKind.Overloaded,
            $"too many requests from {who}: the limit is {rate} per second ({LimitsOptions.Section}:{setting}); retry after {seconds} s");
        await Answer(context, error);
    }

    /// <summary>
    /// Body size per endpoint group: V2 infer (<c>MedServe:MaxInferBytes</c>, checked by the endpoint as it reads),
    /// uploads (<c>MedServe:Management:MaxUploadBytes</c>), jobs (<see cref="LimitsOptions.MaxJobBytes"/>), everything
    /// else (<see cref="LimitsOptions.MaxRequestBytes"/>). A declared length over the limit is refused before a byte is
    /// read; a chunked body is cut off at the limit by the server.
    /// </summary>
    public static IApplicationBuilder UseMedServeBodyLimits(this IApplicationBuilder app) => app.Use(async (context, next) =>
    {
        var request = context.Request;
        var limits = context.RequestServices.GetRequiredService<IOptions<LimitsOptions>>().Value;
        var post = HttpMethods.IsPost(request.Method);
        var path = request.Path;
        (long Max, string Setting, string What)? limit =
            post && path.StartsWithSegments("/v2/models") && path.Value!.EndsWith("/infer", StringComparison.Ordinal) ? null
            : post && path.Equals("/api/models", StringComparison.Ordinal)
                ? (context.RequestServices.GetRequiredService<IOptions<ManagementOptions>>().Value.MaxUploadBytes, "MedServe:Management:MaxUploadBytes", "the upload")
            : post && path.Equals("/api/jobs", StringComparison.Ordinal) ? (limits.MaxJobBytes, $"{LimitsOptions.Section}:MaxJobBytes", "the job")
            : post && path.StartsWithSegments("/dicomweb/studies") ? (limits.MaxStudyBytes, $"{LimitsOptions.Section}:MaxStudyBytes", "the study")
            : (limits.MaxRequestBytes, $"{LimitsOptions.Section}:MaxRequestBytes", "the request body");
        if (limit is not { } l)
        {
            await next(context);
            return;
        }
        if (request.ContentLength is { } declared && declared > l.Max)
        {
            await Answer(context, TooLarge(l, declared));
            return;
        }
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size)
        {
            // One above: the endpoints that count bytes themselves answer with their own message.
            size.MaxRequestBodySize = l.Max + 1;
        }
        try
        {
            await next(context);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge && !context.Response.HasStarted)
        {
            // The server cut off a chunked body while an endpoint read it: say which limit.
            await Answer(context, TooLarge(l, null));
            return;
        }
        if (context.Response.StatusCode == StatusCodes.Status413PayloadTooLarge && !context.Response.HasStarted)
        {
            // ... or while the framework bound it (an empty 413).
            await Answer(context, TooLarge(l, null));
        }
    });

    private static MedServeException TooLarge((long Max, string Setting, string What) limit, long? declared) =>
        new(ErrorKind.TooLarge, declared is { } n
            ? $"{limit.What} is {n} bytes; the limit is {limit.Max} ({limit.Setting})"
            : $"{limit.What} is over the limit of {limit.Max} bytes ({limit.Setting})", "body");

    /// <summary>An error as the caller's API speaks it: V2's <c>{"error"}</c>, or problem+json.</summary>
    private static Task Answer(HttpContext context, MedServeException error)
    {
        context.Response.StatusCode = ErrorStatus.Of(error.Kind);
        return context.Request.Path.StartsWithSegments("/v2")
            ? context.Response.WriteAsJsonAsync(new { error = error.Message })
            : HttpErrors.Problem(error).ExecuteAsync(context);
    }
}
