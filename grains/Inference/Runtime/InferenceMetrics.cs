using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace MedServe.Inference.Runtime;

/// <summary>
/// MedServe's OpenTelemetry instruments (meter <c>MedServe</c>), named after Triton's where one exists:
/// request and compute durations as histograms, so fleet percentiles can be computed. Request counts by outcome are
/// the request histogram's count (<c>medserve_inference_request_duration_seconds_count{outcome=...}</c>): one
/// measurement per request, not a counter beside it recording the same event. Tags are model name, version and
/// outcome: ids, never input values.
/// </summary>
public static class InferenceMetrics
{
    public const string MeterName = "MedServe";

    private static readonly Meter Meter = new(MeterName, "1.0");

    /// <summary>
    /// Sub-millisecond to ten-second buckets (<see cref="LatencyBuckets.Seconds"/>, shared with the silo stats and the
    /// dashboard): serving times are mostly well under the default 5 s first bucket.
    /// </summary>
    private static readonly InstrumentAdvice<double> Seconds = new()
    {
        HistogramBucketBoundaries = LatencyBuckets.Seconds,
    };

    /// <summary>Rows per run, <see cref="LatencyBuckets.Rows"/> (whole numbers, so exact as longs).</summary>
    private static readonly InstrumentAdvice<long> Rows = new()
    {
        HistogramBucketBoundaries = Array.ConvertAll(LatencyBuckets.Rows, b => (long)b),
    };

    private static readonly Histogram<double> RequestDuration = Meter.CreateHistogram<double>(
        "medserve.inference.request.duration", "s", "End-to-end server time of an inference request, by outcome; its count is the requests by outcome (Triton: nv_inference_request_duration_us, nv_inference_request_success/failure)", advice: Seconds);

    private static readonly Histogram<double> ComputeDuration = Meter.CreateHistogram<double>(
        "medserve.inference.compute.duration", "s", "ONNX Runtime time of one run (Triton: nv_inference_compute_infer_duration_us)", advice: Seconds);

    private static readonly Histogram<long> BatchSize = Meter.CreateHistogram<long>(
        "medserve.inference.batch.size", "{row}", "Rows (first dimension) per ONNX Runtime run", advice: Rows);

    private static readonly Histogram<double> QueueDuration = Meter.CreateHistogram<double>(
        "medserve.inference.queue.duration", "s", "Time a request waited in its replica's queue before its batch ran (Triton: nv_inference_queue_duration_us)", advice: Seconds);

    /// <summary>Records how long one request waited in a replica's queue.</summary>
    public static void RecordQueue(string model, string version, double seconds) =>
        QueueDuration.Record(seconds, new TagList { { "model", model }, { "version", version } });

    /// <summary>Records one finished request as seen by a front end: its duration, and so one more of its outcome.</summary>
    public static void RecordRequest(string model, string? version, string outcome, TimeSpan elapsed) =>
        RequestDuration.Record(elapsed.TotalSeconds, new TagList { { "model", model }, { "version", version ?? "default" }, { "outcome", outcome } });

    /// <summary>Records one ONNX Runtime run.</summary>
    public static void RecordCompute(string model, string version, TimeSpan elapsed, long rows)
    {
        var tags = new TagList { { "model", model }, { "version", version } };
        ComputeDuration.Record(elapsed.TotalSeconds, tags);
        BatchSize.Record(rows, tags);
    }
}
