using System.Diagnostics;

namespace MedServe.Telemetry;

/// <summary>
/// The one home of MedServe's traces: the <see cref="ActivitySource"/> every MedServe span comes from, the span names and
/// the attribute names. Spans carry ids, counts, times, model names and versions only: never tensor values, never a
/// caller's request id, job id or any other text a caller chose (see README, "Traces").
/// With no listener (tracing off) <see cref="ActivitySource.StartActivity(string, ActivityKind)"/> returns null and
/// costs a check; a request whose trace was sampled out makes no MedServe span at all.
/// </summary>
public static class MedServeTracing
{
    /// <summary>The source name to subscribe to (<c>AddSource("MedServe")</c>); the meter of the same name is the metrics'.</summary>
    public const string SourceName = "MedServe";

    public static readonly ActivitySource Source = new(SourceName, "1.0");

    /// <summary>A front end's routing of one request: version resolution, replica choice and the grain call(s) to it.</summary>
    public const string RouteSpan = "medserve.route";

    /// <summary>One request's wait in its replica's queue, from arrival to the start of the run that took it.</summary>
    public const string QueueSpan = "medserve.queue";

    /// <summary>The ONNX Runtime run that answered one request, recorded per request (a batch's requests share its times).</summary>
    public const string RunSpan = "medserve.run";

    public const string Model = "medserve.model";
    public const string Version = "medserve.version";
    /// <summary>The replica's grain key (<c>model/version/index/accelerator</c>): operator-chosen names only.</summary>
    public const string Replica = "medserve.replica";
    /// <summary>How many replicas the router tried (2 after a retry on another replica).</summary>
    public const string Attempts = "medserve.route.attempts";
    /// <summary>Milliseconds the request waited in its replica's queue.</summary>
    public const string QueueWaitMs = "medserve.queue.wait_ms";
    /// <summary>Rows (first dimension) of the ONNX Runtime run the request was part of.</summary>
    public const string BatchSize = "medserve.batch.size";
    /// <summary>Requests stacked into that run.</summary>
    public const string BatchRequests = "medserve.batch.requests";
    /// <summary>Rows of this request within the run.</summary>
    public const string RequestRows = "medserve.request.rows";
    /// <summary>"online" or "job".</summary>
    public const string Priority = "medserve.priority";
    /// <summary>ONNX Runtime's time for the run, in milliseconds.</summary>
    public const string ComputeMs = "medserve.compute_ms";
    /// <summary>On failure: the error kind (<c>InvalidInput</c>, <c>Unavailable</c>, ...), never its message.</summary>
    public const string ErrorType = "error.type";

    /// <summary>
    /// The span a replica's queue should record under: the current span when its trace is sampled, else none. A request
    /// whose trace is not sampled (or not traced at all) makes no queue or run span.
    /// </summary>
    public static ActivityContext? SampledParent() =>
        Activity.Current is { Recorded: true } current && Source.HasListeners() ? current.Context : null;

    /// <summary>Marks a span failed with the error's kind as its type; the message is never recorded (it may name inputs).</summary>
    public static void Fail(Activity? span, Exception e)
    {
        if (span is null)
        {
            return;
        }
        span.SetStatus(ActivityStatusCode.Error);
        span.SetTag(ErrorType, e is MedServeException m ? m.Kind.ToString() : e.GetType().Name);
    }
}
