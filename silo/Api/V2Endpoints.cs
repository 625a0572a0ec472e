using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using MedServe.Protocol;
using MedServe.Inference.Runtime;
using MedServe.Routing;
using MedServe.Dashboard.Management;
using MedServe.Dashboard.Security;
using MedServe.Silo.Hosting;

namespace MedServe.Silo.Api;

/// <summary>
/// The Open Inference Protocol (V2) over HTTP, as Triton and KServe speak it: health, server and model
/// metadata, readiness, and infer with JSON or binary tensors. Errors are <c>{"error": "..."}</c>.
/// </summary>
public static partial class V2Endpoints
{
    /// <summary>On a DICOM series answer: the part (1-based, in the order sent) each output row came from.</summary>
    public const string DicomRowPartsHeader = "Dicom-Row-Parts";

    public const string HeaderLength = "Inference-Header-Content-Length";

    private static readonly string ServerVersion =
        typeof(V2Endpoints).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0";

    public static IEndpointRouteBuilder MapV2Api(this IEndpointRouteBuilder app)
    {
        // Each key (anonymous callers: each address) has a request rate (MedServe:Limits:InferPerSecond): 429 over it.
        var v2 = app.MapGroup("/v2").RequireRateLimiting(Limits.InferPolicy);
        // Probes answer anyone, never throttled; everything else needs a key (view, or infer for inference).
        v2.MapGet("/health/live", () => Results.Ok(new { live = true })).AllowAnonymous().DisableRateLimiting();
        v2.MapGet("/health/ready", (NodeReadiness readiness) =>
            readiness.IsReady ? Results.Ok(new { ready = true }) : Results.Json(new { ready = false, draining = readiness.IsDraining }, statusCode: StatusCodes.Status400BadRequest)).AllowAnonymous().DisableRateLimiting();
        v2.MapGet("", () => Results.Ok(new
        {
            name = "medserve",
            version = ServerVersion,
            extensions = new[] { "binary_tensor_data" },
        })).RequireAuthorization(Permissions.View);

        v2.MapGet("/models/{name}", (string name, IGrainFactory grains, ModelRouter router) => Guard(() => MetadataAsync(name, null, grains, router))).RequireAuthorization(Permissions.View);
        v2.MapGet("/models/{name}/versions/{version}", (string name, string version, IGrainFactory grains, ModelRouter router) => Guard(() => MetadataAsync(name, version, grains, router))).RequireAuthorization(Permissions.View);
        v2.MapGet("/models/{name}/ready", (string name, ModelRouter router) => Guard(() => ReadyAsync(name, null, router))).RequireAuthorization(Permissions.View);
        v2.MapGet("/models/{name}/versions/{version}/ready", (string name, string version, ModelRouter router) => Guard(() => ReadyAsync(name, version, router))).RequireAuthorization(Permissions.View);
        // Infer is the hot path: plain request delegates over services resolved once (all singletons), not a
        // per-request binding that looks each one up. ASP.NET Core's http.server.request.duration keeps counting them:
        // it is where a request refused before the endpoint (401, 403, 429) shows.
        var services = new Lazy<InferServices>(() => new InferServices(app.ServiceProvider));
        v2.MapPost("/models/{name}/infer", context => RespondAsync(context, (string)context.Request.RouteValues["name"]!, null, services.Value))
            .RequireAuthorization(Permissions.Infer);
        v2.MapPost("/models/{name}/versions/{version}/infer", context => RespondAsync(context, (string)context.Request.RouteValues["name"]!, (string)context.Request.RouteValues["version"]!, services.Value))
            .RequireAuthorization(Permissions.Infer);
        return app;
    }

    public static IResult Error(MedServeException e)
    {
        var result = Results.Json(new { error = e.Message }, statusCode: ErrorStatus.Of(e.Kind));
        return e.IsRetryable ? new WithHeader(result, "Retry-After", "1") : result;
    }

    private static async Task<IResult> Guard(Func<Task<IResult>> action)
    {
        try
        {
            return await action();
        }
        catch (MedServeException e)
        {
            return Error(e);
        }
        catch (Exception e) when (e is TimeoutException or OrleansException)
        {
            return Error(MedServeException.NotReady($"the cluster could not answer just now ({e.GetType().Name}); retry"));
        }
    }

    private static async Task<IResult> MetadataAsync(string name, string? version, IGrainFactory grains, ModelRouter router)
    {
        var route = await router.ResolveAsync(name, version);
        var model = await grains.GetGrain<IModelGrain>(name).GetAsync();
        var info = model?.Versions.FirstOrDefault(v => v.Manifest.Version == route.Version)
            ?? throw MedServeException.NotFound($"model '{name}' has no version '{route.Version}'");
        var m = info.Manifest;
        return Results.Ok(new
        {
            name = m.Name,
            versions = model!.Versions.Where(v => v.Deployed).Select(v => v.Manifest.Version).ToArray(),
            platform = "onnxruntime_onnx",
            inputs = m.Inputs.Select(i => new { name = i.Name, datatype = i.Datatype.ToString(), shape = i.Shape }),
            outputs = m.Outputs.Select(o => new { name = o.Name, datatype = o.Datatype.ToString(), shape = o.Shape }),
        });
    }

    private static async Task<IResult> ReadyAsync(string name, string? version, ModelRouter router)
    {
        var route = await router.ResolveAsync(name, version);
        var ready = route.State == DeploymentState.Ready;
        // V2: 200 means ready, 4xx means not.
        return Results.Json(new { name, version = route.Version, ready, state = route.State.ToString(), reason = route.Reason },
            statusCode: ready ? StatusCodes.Status200OK : StatusCodes.Status400BadRequest);
    }

    private static async Task RespondAsync(HttpContext context, string name, string? version, InferServices services)
    {
        var result = await InferAsync(name, version, context, services);
        await result.ExecuteAsync(context);
    }

    private static async Task<IResult> InferAsync(string name, string? version, HttpContext context, InferServices services)
    {
        var started = Stopwatch.GetTimestamp();
        var (result, outcome, served, inputHash) = await InferCoreAsync(name, version, context, services);
        InferenceAnswered.Record(services.Audit, services.Router, context, name, version, served, inputHash, outcome, started);
        return result;
    }

    private static async Task<(IResult Result, string Outcome, string? Served, InputDigest InputHash)> InferCoreAsync(string name, string? version, HttpContext context, InferServices services)
    {
        var (router, options, logger, limits) = (services.Router, services.Options, services.Logger, services.Limits);
        var hashInput = services.Audit.AuditsInference;
        byte[]? rented = null;
        var rentedLength = 0;
        var inputHash = default(InputDigest);
        (long Max, string Setting) bodyLimit = (options.MaxInferBytes, "MedServe:MaxInferBytes, --max-infer-bytes");
        try
        {
            int? jsonLength = null;
            if (context.Request.Headers.TryGetValue(HeaderLength, out var headerValue))
            {
                jsonLength = int.TryParse(headerValue, NumberStyles.None, CultureInfo.InvariantCulture, out var n)
                    ? n
                    : throw MedServeException.Invalid($"{HeaderLength} must be a non-negative integer", HeaderLength);
            }
            var dicom = DicomContent.Classify(context.Request.ContentType, out var boundary);
            if (dicom != DicomContent.Kind.None)
            {
                // DICOM (one Part 10 file, or a series as multipart/related): its own, larger body limit.
                bodyLimit = (limits.MaxDicomBytes, $"{LimitsOptions.Section}:MaxDicomBytes");
                if (context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size)
                {
                    size.MaxRequestBodySize = limits.MaxDicomBytes + 1;
                }
            }
            var (buffer, length) = await ReadBodyAsync(context.Request, bodyLimit.Max, bodyLimit.Setting, context.RequestAborted);
            (rented, rentedLength) = (buffer, length);
            inputHash = hashInput ? InputDigest.Of(buffer.AsSpan(0, length)) : default;
            InferenceResponse response;
            V2OutputOptions outputOptions;
            if (dicom != DicomContent.Kind.None)
            {
                (response, var rowParts) = await InferDicomAsync(name, version, dicom, boundary, buffer.AsMemory(0, length), context, router, limits);
                outputOptions = new V2OutputOptions(false, new HashSet<string>());
                if (rowParts is not null)
                {
                    context.Response.Headers[DicomRowPartsHeader] = rowParts;
                }
            }
            else
            {
                InferenceRequest request;
                (request, outputOptions) = V2Codec.ParseRequest(buffer.AsMemory(0, length), jsonLength, limits.MaxTensorElements);
                ReturnBody(rented, length);
                rented = null;
                // A client that goes away gives up its request: the replica skips it if it has not run yet.
                response = await router.InferAsync(name, version, request, context.RequestAborted);
            }
            // Written into a pooled buffer, returned once the answer is sent.
            var writer = new PooledBufferWriter(4096);
            try
            {
                var headerLength = V2Codec.WriteResponse(response, outputOptions, writer);
                if (headerLength is { } h)
                {
                    context.Response.Headers[HeaderLength] = h.ToString(CultureInfo.InvariantCulture);
                }
                return (new PooledBytes(writer, headerLength is null ? "application/json" : "application/octet-stream"), "success", response.ModelVersion, inputHash);
            }
            catch
            {
                writer.Dispose();
                throw;
            }
        }
        catch (MedServeException e)
        {
            return (Error(e), e.Kind.ToString(), null, inputHash);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return (Error(new MedServeException(ErrorKind.TooLarge, $"request body is over the limit of {bodyLimit.Max} bytes ({bodyLimit.Setting})")), nameof(ErrorKind.TooLarge), null, inputHash);
        }
        catch (BadHttpRequestException e)
        {
            // The body could not be read as HTTP (broken chunked framing, sent too slowly): the request's fault, never a
            // 500. Kestrel's status (400, 408); its message is not echoed, so no byte of the request can reach the answer.
            var reason = e.StatusCode == StatusCodes.Status408RequestTimeout ? "it arrived too slowly" : "its HTTP framing is broken (a bad chunk, or it ended early)";
            return (Results.Json(new { error = $"the request body could not be read: {reason}" }, statusCode: e.StatusCode), nameof(ErrorKind.InvalidInput), null, inputHash);
        }
        catch (Exception e) when (e is TimeoutException or OrleansException)
        {
            // The cluster could not answer in time (a silo went away, a call timed out): retryable.
            InferFailed(logger, e.GetType().Name, Logged(router, name, version));
            return (Error(MedServeException.NotReady($"the cluster could not serve '{name}' just now ({e.GetType().Name}); retry")), nameof(ErrorKind.NotReady), null, inputHash);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Never echo the exception: it may carry input values. Log its type and frames only.
            InferFailed(logger, ErrorShape.Of(e), Logged(router, name, version));
            return (Error(new MedServeException(ErrorKind.Internal, $"internal error while serving '{name}'")), nameof(ErrorKind.Internal), null, inputHash);
        }
        finally
        {
            if (rented is not null)
            {
                ReturnBody(rented, rentedLength);
            }
        }
    }

    /// <summary>Reads the body into a pooled buffer; over <paramref name="max"/> bytes is 413, however it is sent.</summary>
    private static async Task<(byte[] Buffer, int Length)> ReadBodyAsync(HttpRequest request, long max, string setting, CancellationToken ct)
    {
        if (request.ContentLength is { } declared && declared > max)
        {
            throw new MedServeException(ErrorKind.TooLarge, $"request body is {declared} bytes; the limit is {max} ({setting})");
        }
        // Start small whatever Content-Length claims; grow as bytes really arrive.
        var buffer = ArrayPool<byte>.Shared.Rent((int)Math.Min((request.ContentLength ?? 16 * 1024) + 1, 1024 * 1024));
        var length = 0;
        try
        {
            while (true)
            {
                if (length == buffer.Length)
                {
                    if (length >= max || buffer.Length >= Array.MaxLength)
                    {
                        throw new MedServeException(ErrorKind.TooLarge, $"request body is over the limit of {max} bytes ({setting})");
                    }
                    var bigger = ArrayPool<byte>.Shared.Rent((int)Math.Min(Math.Min((long)buffer.Length * 2, max + 1), Array.MaxLength));
                    buffer.AsSpan(0, length).CopyTo(bigger);
                    ReturnBody(buffer, length);
                    buffer = bigger;
                }
                var read = await request.Body.ReadAsync(buffer.AsMemory(length), ct);
                if (read == 0)
                {
                    break;
                }
                length += read;
                if (length > max)
                {
                    throw new MedServeException(ErrorKind.TooLarge, $"request body is over the limit of {max} bytes ({setting})");
                }
            }
            return (buffer, length);
        }
        catch
        {
            ReturnBody(buffer, buffer.Length); // a failed read may have left bytes past what it reported
            throw;
        }
    }

    /// <summary>
    /// Returns a body buffer to the pool with the request's bytes wiped: no patient data stays in a pooled array. Only the
    /// bytes the body filled: the rest of a rented array (often twice the body) holds nothing of it.
    /// </summary>
    private static void ReturnBody(byte[] buffer, int length)
    {
        buffer.AsSpan(0, Math.Min(length, buffer.Length)).Clear();
        ArrayPool<byte>.Shared.Return(buffer);
    }

    /// <summary>A model name for the log: only one that has been routed; a path's name is whatever its caller wrote.</summary>
    private static string Logged(ModelRouter router, string name, string? version) => router.HasRouted(name, version) ? name : "(unknown)";

    [LoggerMessage(3001, LogLevel.Error, "Infer on {Model} failed with {ExceptionType}")]
    private static partial void InferFailed(ILogger logger, string exceptionType, string model);

    /// <summary>What an infer request needs from the container: singletons, resolved once.</summary>
    private sealed class InferServices(IServiceProvider services)
    {
        public ModelRouter Router { get; } = services.GetRequiredService<ModelRouter>();

        public NodeOptions Options { get; } = services.GetRequiredService<NodeOptions>();

        public AuditWriter Audit { get; } = services.GetRequiredService<AuditWriter>();

        public ILogger Logger { get; } = services.GetRequiredService<ILogger<ModelRouter>>();

        public LimitsOptions Limits { get; } = services.GetRequiredService<Microsoft.Extensions.Options.IOptions<LimitsOptions>>().Value;
    }

    /// <summary>A response body in a pooled buffer, returned to the pool once written (or if writing fails).</summary>
    private sealed class PooledBytes(PooledBufferWriter body, string contentType) : IResult
    {
        public async Task ExecuteAsync(HttpContext httpContext)
        {
            using (body)
            {
                httpContext.Response.ContentType = contentType;
                httpContext.Response.ContentLength = body.WrittenCount;
                await httpContext.Response.Body.WriteAsync(body.WrittenMemory, httpContext.RequestAborted);
            }
        }
    }

    /// <summary>An <see cref="IResult"/> with one extra response header.</summary>
    private sealed class WithHeader(IResult inner, string name, string value) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext)
        {
            httpContext.Response.Headers[name] = value;
            return inner.ExecuteAsync(httpContext);
        }
    }
}
