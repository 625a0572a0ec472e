using System.Buffers;
using System.Diagnostics;
using System.Text.Json;
using MedServe.Dashboard.Management;
using MedServe.Dashboard.Security;
using MedServe.Inference.Runtime;
using MedServe.Medical.Records;
using MedServe.Protocol;
using MedServe.Routing;

namespace MedServe.Silo.Api;

/// <summary>
/// Named tabular records: <c>POST /v2/models/{m}[/versions/{v}]/records</c> with <c>application/json</c>
/// (<c>{"records": [{"feature": value, ...}]}</c>) or <c>text/csv</c> (a header of feature names). Every field is checked
/// against the model's features (<see cref="FeatureValues"/>); the records that pass run as one batch through the
/// router, and the answer lists per record its outputs (named by the output labels) or its errors (row and field). A
/// request that is bad as a whole (not JSON, no records, unknown model) is problem+json naming the field.
/// </summary>
public static partial class RecordsEndpoints
{
    public static IEndpointRouteBuilder MapRecordsApi(this IEndpointRouteBuilder app)
    {
        // Inference: the same permission and per-key rate as V2 infer.
        var v2 = app.MapGroup("/v2").RequireRateLimiting(Limits.InferPolicy);
        v2.MapPost("/models/{name}/records", (string name, HttpContext context, IGrainFactory grains, ModelRouter router, AuditWriter audit, ILogger<ModelRouter> logger) =>
            RecordsAsync(name, null, context, grains, router, audit, logger)).RequireAuthorization(Permissions.Infer);
        v2.MapPost("/models/{name}/versions/{version}/records", (string name, string version, HttpContext context, IGrainFactory grains, ModelRouter router, AuditWriter audit, ILogger<ModelRouter> logger) =>
            RecordsAsync(name, version, context, grains, router, audit, logger)).RequireAuthorization(Permissions.Infer);
        return app;
    }

    private static async Task<IResult> RecordsAsync(string name, string? version, HttpContext context, IGrainFactory grains, ModelRouter router, AuditWriter audit, ILogger logger)
    {
        var started = Stopwatch.GetTimestamp();
        string? served = null;
        var inputHash = default(InputDigest);
        string outcome;
        IResult result;
        try
        {
            var csv = IsCsv(context.Request.ContentType);
            if (!csv && !IsJson(context.Request.ContentType))
            {
                throw new MedServeException(ErrorKind.InvalidInput, "records are sent as application/json ({\"records\": [...]}) or text/csv (a header of feature names)", "content-type");
            }
            var route = await router.ResolveAsync(name, version);
            var manifest = (await grains.GetGrain<IModelGrain>(route.Model).GetVersionAsync(route.Version))?.Manifest
                ?? throw MedServeException.NotFound($"model '{name}' has no version '{route.Version}'");
            var features = new FeatureValues(manifest);
            var body = await ReadBodyAsync(context.Request, context.RequestAborted);
            inputHash = audit.AuditsInference ? InputDigest.Of(body) : default;
            var rows = csv ? NamedRecords.ReadCsv(body, manifest) : NamedRecords.ReadJson(body, features);
            if (rows.Length == 0)
            {
                throw MedServeException.Invalid("the CSV has a header but no records", "body");
            }
            var maxElements = context.RequestServices.GetRequiredService<Microsoft.Extensions.Options.IOptions<LimitsOptions>>().Value.MaxTensorElements;
            if ((long)rows.Length * features.Width > maxElements)
            {
                throw new MedServeException(ErrorKind.TooLarge,
                    $"{rows.Length} records of {features.Width} features are over the limit of {maxElements} values ({LimitsOptions.Section}:MaxTensorElements): send them as a job", "records");
            }
            var request = NamedRecords.Request(features, rows);
            var response = request is null ? null : await router.InferAsync(route.Model, route.Version, request);
            served = response?.ModelVersion ?? route.Version;
            var writer = new ArrayBufferWriter<byte>(4096);
            using (var json = new Utf8JsonWriter(writer))
            {
                NamedRecords.WriteAnswer(json, manifest, served, rows, response);
            }
            // Some records ran: 200, each record with its outputs or errors. None could: 422, the same body.
            var status = response is null ? StatusCodes.Status422UnprocessableEntity : StatusCodes.Status200OK;
            outcome = response is null ? nameof(ErrorKind.InvalidInput) : "success";
            result = new BodyResult(writer.WrittenMemory.ToArray(), "application/json", status);
        }
        catch (MedServeException e)
        {
            outcome = e.Kind.ToString();
            result = HttpErrors.Problem(NameField(e), context);
        }
        catch (Exception e) when (e is TimeoutException or OrleansException)
        {
            RecordsFailed(logger, e.GetType().Name);
            outcome = nameof(ErrorKind.NotReady);
            result = HttpErrors.Problem(MedServeException.NotReady($"the cluster could not serve '{name}' just now ({e.GetType().Name}); retry"), context);
        }
        catch (Exception e) when (e is not (OperationCanceledException or BadHttpRequestException))
        {
            // Never echo the exception: it may carry input values. Log its type and frames only.
            RecordsFailed(logger, ErrorShape.Of(e));
            outcome = nameof(ErrorKind.Internal);
            result = HttpErrors.Problem(new MedServeException(ErrorKind.Internal, $"internal error while serving '{name}'"), context);
        }
        InferenceAnswered.Record(audit, router, context, name, version, served, inputHash, outcome, started, "records");
        return result;
    }

    /// <summary>An unknown model or version is the path's fault: name it as the field.</summary>
    private static MedServeException NameField(MedServeException e) =>
        e.Kind == ErrorKind.NotFound && e.Field is null ? new MedServeException(e.Kind, e.Message, "model") : e;

    internal static bool IsJson(string? contentType) =>
        contentType is not null && (contentType.StartsWith("application/json", StringComparison.OrdinalIgnoreCase)
            || contentType.Split(';')[0].Trim().EndsWith("+json", StringComparison.OrdinalIgnoreCase));

    private static bool IsCsv(string? contentType) =>
        contentType is not null && contentType.StartsWith("text/csv", StringComparison.OrdinalIgnoreCase);

    /// <summary>The whole body (the body-size middleware caps it at MedServe:Limits:MaxRequestBytes, answering 413 over it).</summary>
    internal static async Task<byte[]> ReadBodyAsync(HttpRequest request, CancellationToken ct)
    {
        using var buffer = new MemoryStream();
        await request.Body.CopyToAsync(buffer, ct);
        return buffer.ToArray();
    }

    /// <summary>Bytes with a content type and a status (Results.Bytes has no status).</summary>
    internal sealed class BodyResult(byte[] body, string contentType, int status) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext)
        {
            httpContext.Response.StatusCode = status;
            httpContext.Response.ContentType = contentType;
            httpContext.Response.ContentLength = body.Length;
            return httpContext.Response.Body.WriteAsync(body).AsTask();
        }
    }

    [LoggerMessage(3101, LogLevel.Error, "Records inference failed with {ExceptionType}")]
    private static partial void RecordsFailed(ILogger logger, string exceptionType);
}
