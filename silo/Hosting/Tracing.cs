using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using MedServe.Telemetry;
using OpenTelemetry;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace MedServe.Silo.Hosting;

/// <summary>Settings of section <c>MedServe:Tracing</c> (README, "Traces").</summary>
public sealed class TracingOptions
{
    public const string Section = "MedServe:Tracing";

    /// <summary>
    /// Traces on or off; unset: on exactly when an OTLP endpoint is configured (<c>OTEL_EXPORTER_OTLP_ENDPOINT</c> or
    /// <c>OTEL_EXPORTER_OTLP_TRACES_ENDPOINT</c>, as environment variables or settings).
    /// </summary>
    public bool? Enabled { get; set; }

    /// <summary>
    /// Share of traces recorded, 0 to 1, decided from the trace id, so every silo keeps or drops the same traces: give
    /// every silo the same ratio. Default 0.01: in the bench (bench/README.md, "What tracing costs") 1% cost no more than
    /// the machine's noise, while 10% cost about 12% of throughput (about 4 KB of OTLP per traced request).
    /// </summary>
    public double SampleRatio { get; set; } = 0.01;
}

/// <summary>
/// OpenTelemetry traces of a silo: the HTTP server span (ASP.NET Core instrumentation), Orleans' grain call spans
/// (activity propagation carries the trace id across grain calls, silos and the grain client), MedServe's own route,
/// queue and run spans (<see cref="MedServeTracing"/>); sampled by trace id, redacted (<see cref="TraceRedaction"/>),
/// exported over OTLP when an endpoint is configured. Off: no listener, no Orleans call filters, nothing recorded.
/// </summary>
public static class Tracing
{
    /// <summary>The sources a silo records.</summary>
    public static readonly string[] Sources = [MedServeTracing.SourceName, "Microsoft.Orleans.Application", "Microsoft.Orleans.Runtime"];

    /// <summary>URL prefixes whose requests are traced: the APIs. Health probes, /metrics and the web app's pages are not.</summary>
    private static readonly string[] TracedPaths = ["/v2/models", "/fhir", "/api", "/dicomweb"];

    /// <summary>Whether tracing is on for this configuration.</summary>
    public static bool IsEnabled(IConfiguration configuration)
    {
        var options = configuration.GetSection(TracingOptions.Section).Get<TracingOptions>() ?? new TracingOptions();
        return options.Enabled ?? HasOtlpEndpoint(configuration);
    }

    private static bool HasOtlpEndpoint(IConfiguration configuration) =>
        !string.IsNullOrWhiteSpace(configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]) || !string.IsNullOrWhiteSpace(configuration["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]);

    /// <summary>Adds tracing to the node when it is on; returns whether it is (the silo then propagates activities).</summary>
    public static bool AddMedServeTracing(this WebApplicationBuilder builder)
    {
        var configuration = builder.Configuration;
        if (!IsEnabled(configuration))
        {
            return false;
        }
        var options = configuration.GetSection(TracingOptions.Section).Get<TracingOptions>() ?? new TracingOptions();
        if (options.SampleRatio is < 0 or > 1 || double.IsNaN(options.SampleRatio))
        {
            throw new ArgumentException($"{TracingOptions.Section}:SampleRatio must be between 0 and 1, not {options.SampleRatio.ToString(CultureInfo.InvariantCulture)}");
        }
        var ratio = new TraceIdRatioBasedSampler(options.SampleRatio);
        builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource =>
            {
                if (string.IsNullOrWhiteSpace(configuration["OTEL_SERVICE_NAME"]))
                {
                    resource.AddService("medserve");
                }
            })
            .WithTracing(tracing =>
            {
                tracing.AddSource(Sources)
                    .AddAspNetCoreInstrumentation(o =>
                    {
                        o.Filter = context => TracedPaths.Any(p => context.Request.Path.StartsWithSegments(p, StringComparison.OrdinalIgnoreCase));
                        o.RecordException = false;
                    })
                    // Parent-based, so a trace is kept or dropped whole inside a process; a remote parent (a caller's
                    // traceparent, or the grain call that crossed a silo) is decided by the same trace-id ratio, so a
                    // caller cannot raise the share recorded and every silo decides a trace alike.
                    .SetSampler(new ParentBasedSampler(ratio, remoteParentSampled: ratio, remoteParentNotSampled: ratio))
                    // First, so every exporter (OTLP, a test's) sees spans already redacted.
                    .AddProcessor(new TraceRedaction());
                if (HasOtlpEndpoint(configuration))
                {
                    // Endpoint, protocol (grpc or http/protobuf), headers and timeout from the standard OTEL_EXPORTER_OTLP_* settings.
                    tracing.AddOtlpExporter();
                }
            });
        return true;
    }
}

/// <summary>
/// Keeps what spans carry to ids, hashes, routes and counts, whatever the instrumentation would add: the HTTP span keeps
/// the method, route, scheme, protocol and status (its path becomes the route template, so <c>/api/jobs/{id}</c> names no
/// job); Orleans' grain call spans keep the interface, method and grain types, with each grain's key replaced by the
/// first 12 hex digits of its SHA-256 (as the log names a job) unless the key is a model, deployment or replica name, and
/// lose exception messages and stack traces (they may name grain keys). A caller's <c>tracestate</c> is dropped on
/// arrival. MedServe's own spans carry only what <see cref="MedServeTracing"/> defines.
/// </summary>
public sealed class TraceRedaction : BaseProcessor<Activity>
{
    private const string AspNetCore = "Microsoft.AspNetCore";

    private static readonly HashSet<string> HttpKept = new(StringComparer.Ordinal)
    {
        "http.request.method", "http.response.status_code", "http.route", "url.scheme", "network.protocol.version", "error.type",
    };

    /// <summary>Orleans 10's attributes that name no key and carry no message (its exception messages may name grain ids).</summary>
    private static readonly HashSet<string> OrleansKept = new(StringComparer.Ordinal)
    {
        "rpc.system.name", "rpc.method", "orleans.rpc.service", "orleans.grain.type", "orleans.silo.id", "orleans.activation.cause",
        "orleans.storage.provider", "orleans.storage.state.name", "orleans.storage.state.type", "exception.type", "exception.escaped",
    };

    /// <summary>Orleans 10's attributes that hold a grain id (<c>type/key</c>): kept with the key hashed.</summary>
    private static readonly string[] OrleansGrainIds = ["orleans.rpc.target_id", "orleans.rpc.source_id", "orleans.grain.id"];

    /// <summary>
    /// Grain types whose keys are operator-chosen names (versions, replica slots) that exist before they are called, kept
    /// in clear. Not model grains: the router asks a model grain about a name before it knows the model exists, so its
    /// key may be whatever a caller wrote in a path.
    /// </summary>
    private static readonly HashSet<string> NamedGrainTypes = new(StringComparer.Ordinal) { "replica", "deployment", "catalog" };

    public override void OnStart(Activity data)
    {
        if (data.Source.Name == AspNetCore && data.TraceStateString is not null)
        {
            // Free text from the caller: never recorded, never passed on to the grain calls under it.
            data.TraceStateString = null;
        }
    }

    public override void OnEnd(Activity data)
    {
        var source = data.Source.Name;
        if (source == AspNetCore)
        {
            Keep(data, HttpKept);
            data.SetTag("url.path", data.GetTagItem("http.route") as string ?? "(no route)");
        }
        else if (source.StartsWith("Microsoft.Orleans", StringComparison.Ordinal))
        {
            var ids = Array.ConvertAll(OrleansGrainIds, key => data.GetTagItem(key) as string);
            Keep(data, OrleansKept);
            for (var i = 0; i < ids.Length; i++)
            {
                data.SetTag(OrleansGrainIds[i], GrainId(ids[i]));
            }
        }
        if (data.StatusDescription is not null)
        {
            data.SetStatus(data.Status);
        }
    }

    private static void Keep(Activity data, HashSet<string> kept)
    {
        List<string>? drop = null;
        foreach (var tag in data.TagObjects)
        {
            if (!kept.Contains(tag.Key))
            {
                (drop ??= []).Add(tag.Key);
            }
        }
        foreach (var key in drop ?? [])
        {
            data.SetTag(key, null);
        }
    }

    /// <summary><c>type/key</c> with the key hashed unless the grain type's keys are names; null stays null.</summary>
    internal static string? GrainId(string? id)
    {
        if (id is null)
        {
            return null;
        }
        var slash = id.IndexOf('/', StringComparison.Ordinal);
        var type = slash < 0 ? id : id[..slash];
        if (slash < 0 || NamedGrainTypes.Contains(type))
        {
            return id;
        }
        return $"{type}/sha256:{Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(id[(slash + 1)..])))[..12]}";
    }
}
