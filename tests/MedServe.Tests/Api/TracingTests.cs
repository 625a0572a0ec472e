using System.Diagnostics;
using System.Globalization;
using System.Text;
using MedServe.Silo.Hosting;
using MedServe.Telemetry;
using MedServe.Tests.Support;
using Microsoft.AspNetCore.Builder;
using OpenTelemetry.Trace;

namespace MedServe.Tests.Api;

/// <summary>
/// One V2 inference on a real node with tracing on, read back from OpenTelemetry's in-memory exporter: the whole chain
/// under the caller's trace id (HTTP server span, router, the replica's queue and run spans with the queue wait and
/// batch size: the node's one replica is on its own silo, so the router hands the request to its queue directly, with no
/// Orleans grain call between; a job item or a replica on another silo has the grain call's spans there), and no attribute of any span carrying the request id, a header, the query
/// string, the caller's tracestate or an input value sent as markers.
/// </summary>
public sealed class TracingTests
{
    private const float MarkerValue = 4242.4242f;
    private const string MarkerValueText = "4242.42";

    [Fact]
    public async Task One_V2_inference_is_one_trace_from_HTTP_to_the_replica_run_and_carries_no_caller_data()
    {
        var spans = new SpanCollector();
        var data = Paths.TempDirectory("tracing");
        var (app, address) = await InProcessNode.StartAsync(data, Path.Combine(Paths.Samples, "diabetes-linear"), NodeProcess.FreePort(),
            ["--accelerator", "cpu", "--MedServe:Tracing:Enabled", "true", "--MedServe:Tracing:SampleRatio", "1"],
            services => services.ConfigureOpenTelemetryTracerProvider(tracing => tracing.AddInMemoryExporter(spans)));
        try
        {
            var marker = $"TRACE-LEAK-{Guid.NewGuid():N}";
            var traceId = ActivityTraceId.CreateRandom();
            var callerSpan = ActivitySpanId.CreateRandom();
            using var http = new HttpClient { BaseAddress = address };
            var values = string.Join(',', new[] { 61f, 1, 25.8f, 90, 280, 195.4f, 55, 5, 4.9972f, MarkerValue }.Select(v => v.ToString("R", CultureInfo.InvariantCulture)));
            using var request = new HttpRequestMessage(HttpMethod.Post, $"/v2/models/diabetes-linear/infer?patient={marker}-query")
            {
                Content = new StringContent($$"""{"id":"{{marker}}-id","inputs":[{"name":"input","datatype":"FP32","shape":[1,10],"data":[{{values}}]}]}""", Encoding.UTF8, "application/json"),
            };
            request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", NodeFixture.AdminKey);
            request.Headers.TryAddWithoutValidation("traceparent", $"00-{traceId}-{callerSpan}-01");
            request.Headers.TryAddWithoutValidation("tracestate", $"medserve={marker}-tracestate");
            request.Headers.TryAddWithoutValidation("X-Request-Id", $"{marker}-header");
            using var response = await http.SendAsync(request);
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, body);

            // The HTTP span ends after the answer is written: wait for every span of the chain, not a fixed time.
            static bool Is(Activity a, string source, ActivityKind kind) => a.Source.Name == source && a.Kind == kind;
            static bool IsReplicaInfer(Activity a) => a.DisplayName == "IReplicaGrain/InferAsync";
            static bool IsTheRun(Activity a) => a.OperationName == MedServeTracing.RunSpan;
            var trace = await spans.WaitAsync(all =>
            {
                var mine = all.Where(a => a.TraceId == traceId).ToList();
                return mine.Any(a => Is(a, "Microsoft.AspNetCore", ActivityKind.Server))
                    && mine.Any(a => a.OperationName == MedServeTracing.RouteSpan)
                    && mine.Any(a => a.OperationName == MedServeTracing.QueueSpan)
                    && mine.Any(IsTheRun);
            }, traceId, TimeSpan.FromSeconds(30));

            var server = Assert.Single(trace, a => Is(a, "Microsoft.AspNetCore", ActivityKind.Server));
            Assert.Equal(callerSpan, server.ParentSpanId);
            Assert.Equal("/v2/models/{name}/infer", server.GetTagItem("url.path"));
            var route = Assert.Single(trace, a => a.OperationName == MedServeTracing.RouteSpan);
            Assert.Equal(server.SpanId, route.ParentSpanId);
            Assert.Equal("diabetes-linear", route.GetTagItem(MedServeTracing.Model));
            Assert.Equal("1", route.GetTagItem(MedServeTracing.Version));
            // The replica is local: no grain call was made for it.
            Assert.DoesNotContain(trace, IsReplicaInfer);
            var queue = Assert.Single(trace, a => a.OperationName == MedServeTracing.QueueSpan);
            Assert.Equal(route.SpanId, queue.ParentSpanId);
            var wait = Assert.IsType<double>(queue.GetTagItem(MedServeTracing.QueueWaitMs));
            Assert.InRange(wait, 0, 30_000);
            var run = Assert.Single(trace, IsTheRun);
            Assert.Equal(route.SpanId, run.ParentSpanId);
            Assert.Equal(1, Assert.IsType<int>(run.GetTagItem(MedServeTracing.BatchSize)));
            Assert.Equal(1, Assert.IsType<int>(run.GetTagItem(MedServeTracing.BatchRequests)));
            Assert.Equal(wait, run.GetTagItem(MedServeTracing.QueueWaitMs));
            Assert.Equal(route.GetTagItem(MedServeTracing.Replica), run.GetTagItem(MedServeTracing.Replica));
            Assert.True(run.StartTimeUtc >= queue.StartTimeUtc + queue.Duration - TimeSpan.FromMilliseconds(1), "the run starts where the queue wait ends");
            Assert.Equal(ActivityStatusCode.Unset, run.Status);

            // Nothing the caller chose, in any span recorded (this trace or any other), anywhere a span can carry text.
            var leaks = new List<string>();
            foreach (var span in spans.Snapshot())
            {
                var texts = new List<(string Where, string? Text)>
                {
                    ("name", span.DisplayName), ("operation", span.OperationName), ("status", span.StatusDescription), ("tracestate", span.TraceStateString),
                };
                texts.AddRange(span.TagObjects.Select(t => ($"attribute {t.Key}", Convert.ToString(t.Value, CultureInfo.InvariantCulture))));
                texts.AddRange(span.Events.SelectMany(e => e.Tags.Select(t => ($"event {e.Name} {t.Key}", Convert.ToString(t.Value, CultureInfo.InvariantCulture)))));
                texts.AddRange(span.Links.SelectMany(l => l.Tags?.Select(t => ($"link {t.Key}", Convert.ToString(t.Value, CultureInfo.InvariantCulture))) ?? []));
                foreach (var (where, text) in texts)
                {
                    if (text is not null && (text.Contains(marker, StringComparison.Ordinal) || text.Contains(MarkerValueText, StringComparison.Ordinal)))
                    {
                        leaks.Add($"{span.Source.Name} {span.DisplayName}: {where} = {text}");
                    }
                }
            }
            Assert.True(leaks.Count == 0, "caller data in spans:\n" + string.Join('\n', leaks));
            Assert.True(trace.Count >= 4, $"only {trace.Count} spans in the trace");
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
            Directory.Delete(data, recursive: true);
        }
    }

    [Theory]
    [InlineData("job/patient-1234", "job/sha256:")]
    [InlineData("jobworker/patient-1234", "jobworker/sha256:")]
    [InlineData("replica/diabetes-linear/1/0/cpu", "replica/diabetes-linear/1/0/cpu")]
    [InlineData("deployment/diabetes-linear/1", "deployment/diabetes-linear/1")]
    [InlineData("model/patient-1234", "model/sha256:")] // the router asks a model grain before it knows the name exists
    public void Grain_keys_in_spans_are_hashed_unless_they_are_model_names(string grain, string expectedStart)
    {
        var redacted = TraceRedaction.GrainId(grain)!;
        Assert.StartsWith(expectedStart, redacted, StringComparison.Ordinal);
        Assert.DoesNotContain("patient", redacted, StringComparison.Ordinal);
    }

    /// <summary>The exporter's list, safe to read while other threads export into it; wakes waiters on each span.</summary>
    private sealed class SpanCollector : ICollection<Activity>
    {
        private readonly List<Activity> _spans = [];
        private readonly Lock _gate = new();
        private TaskCompletionSource _added = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Count
        {
            get
            {
                lock (_gate)
                {
                    return _spans.Count;
                }
            }
        }

        public bool IsReadOnly => false;

        public void Add(Activity item)
        {
            TaskCompletionSource added;
            lock (_gate)
            {
                _spans.Add(item);
                added = _added;
                _added = new(TaskCreationOptions.RunContinuationsAsynchronously);
            }
            added.TrySetResult();
        }

        public List<Activity> Snapshot()
        {
            lock (_gate)
            {
                return [.. _spans];
            }
        }

        /// <summary>Waits until <paramref name="done"/> holds for the spans exported so far; returns those of <paramref name="traceId"/>.</summary>
        public async Task<List<Activity>> WaitAsync(Func<List<Activity>, bool> done, ActivityTraceId traceId, TimeSpan timeout)
        {
            using var deadline = new CancellationTokenSource(timeout);
            while (true)
            {
                Task added;
                List<Activity> now;
                lock (_gate)
                {
                    added = _added.Task;
                    now = [.. _spans];
                }
                if (done(now))
                {
                    return [.. now.Where(a => a.TraceId == traceId)];
                }
                try
                {
                    await added.WaitAsync(deadline.Token);
                }
                catch (OperationCanceledException)
                {
                    var mine = now.Where(a => a.TraceId == traceId).Select(a => $"{a.Source.Name} {a.Kind} {a.DisplayName} ({a.SpanId} under {a.ParentSpanId}) "
                        + string.Join(", ", a.TagObjects.Select(t => $"{t.Key}={t.Value}")));
                    Assert.Fail($"the trace was not complete within {timeout.TotalSeconds:0} s; its spans:\n" + string.Join('\n', mine));
                }
            }
        }

        public void Clear()
        {
            lock (_gate)
            {
                _spans.Clear();
            }
        }

        public bool Contains(Activity item)
        {
            lock (_gate)
            {
                return _spans.Contains(item);
            }
        }

        public void CopyTo(Activity[] array, int arrayIndex)
        {
            lock (_gate)
            {
                _spans.CopyTo(array, arrayIndex);
            }
        }

        public bool Remove(Activity item)
        {
            lock (_gate)
            {
                return _spans.Remove(item);
            }
        }

        public IEnumerator<Activity> GetEnumerator() => Snapshot().GetEnumerator();

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }
}
