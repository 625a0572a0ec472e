using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MedServe.Tests.Support;

namespace MedServe.Tests.Api;

/// <summary>
/// Dynamic batching as HTTP callers meet it on a real node: batches form under concurrent load (and show in
/// /metrics), the policy changes at runtime without a dropped request, <c>parameters.timeout</c> expires with 504,
/// a full queue answers 429 with Retry-After, and bad policies are refused naming the field.
/// </summary>
[Collection(NodeCollection.Name)]
public sealed class BatchingApiTests(NodeFixture node)
{
    private const string Logreg = "breast-cancer-logreg";
    private const string Segmenter = "ct-bone-segmenter";

    private async Task SetPolicyAsync(string model, object batching)
    {
        using var response = await node.Http.PutAsJsonAsync($"/api/deployments/{model}/1?wait=true", new { replicas = 1, batching });
        var body = await NodeFixture.ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, $"policy for {model} answered {(int)response.StatusCode}: {body}");
        Assert.Equal("Ready", body!["state"]!.GetValue<string>());
    }

    private Task RestoreAsync(string model) => SetPolicyAsync(model, new { });

    private static object Row(float[] features, object? parameters = null) => new
    {
        parameters,
        inputs = new[] { new { name = "input", datatype = "FP32", shape = new[] { 1, 30 }, data = features } },
    };

    /// <summary>A segmenter request in the binary extension: big enough to keep an executor busy.</summary>
    private async Task<HttpResponseMessage> PostImageAsync(int rows, int size, object? parameters = null)
    {
        var header = JsonSerializer.SerializeToUtf8Bytes(new
        {
            parameters,
            inputs = new[] { new { name = "image", datatype = "FP32", shape = new[] { rows, 1, size, size }, parameters = new { binary_data_size = rows * size * size * 4 } } },
            outputs = new[] { new { name = "mask", parameters = new { binary_data = true } } },
        });
        var body = new byte[header.Length + (rows * size * size * 4)];
        header.CopyTo(body, 0);
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        content.Headers.Add("Inference-Header-Content-Length", header.Length.ToString(CultureInfo.InvariantCulture));
        return await node.Http.PostAsync($"/v2/models/{Segmenter}/infer", content);
    }

    [Fact]
    public async Task Concurrent_requests_form_batches_that_show_in_the_response_and_in_metrics()
    {
        var rows = TestData.BreastCancer();
        await SetPolicyAsync(Logreg, new { max_batch_size = 16, max_queue_delay_microseconds = 5000 });
        try
        {
            var answers = await Task.WhenAll(Enumerable.Range(0, 96).Select(i => node.PostJsonAsync($"/v2/models/{Logreg}/infer", Row(rows[i % rows.Count].Features))));
            Assert.All(answers, a => Assert.Equal(200, a.Status));
            var sizes = answers.Select(a => a.Body!["parameters"]!["batch_size"]!.GetValue<int>()).ToArray();
            Assert.Contains(sizes, s => s > 1);
            Assert.All(sizes, s => Assert.InRange(s, 1, 16));
            for (var i = 0; i < answers.Length; i++)
            {
                var p = answers[i].Body!["outputs"]!.AsArray().Single(o => o!["name"]!.GetValue<string>() == "probabilities")!["data"]![1]!.GetValue<double>();
                Assert.Equal(rows[i % rows.Count].PBenignLogreg, p, 4);
            }

            var metrics = await node.Http.GetStringAsync("/metrics");
            var (sum, count) = (Scrape(metrics, "medserve_inference_batch_size", "_sum", Logreg), Scrape(metrics, "medserve_inference_batch_size", "_count", Logreg));
            Assert.True(sum > count, $"batch size histogram: sum {sum} over count {count} runs should be above one row per run");
            Assert.Matches("medserve_inference_queue_duration_seconds_count\\{[^}]*model=\"breast-cancer-logreg\"", metrics);
        }
        finally
        {
            await RestoreAsync(Logreg);
        }
    }

    [Fact]
    public async Task The_policy_changes_at_runtime_without_dropping_a_request()
    {
        var rows = TestData.BreastCancer();
        using var stop = new CancellationTokenSource();
        var statuses = new System.Collections.Concurrent.ConcurrentBag<int>();
        var load = Enumerable.Range(0, 6).Select(w => Task.Run(async () =>
        {
            for (var i = 0; !stop.IsCancellationRequested && i < 2000; i++)
            {
                statuses.Add((await node.PostJsonAsync($"/v2/models/{Logreg}/infer", Row(rows[(w + i) % rows.Count].Features))).Status);
            }
        })).ToArray();
        try
        {
            await SetPolicyAsync(Logreg, new { max_batch_size = 4, max_queue_delay_microseconds = 100 });
            await SetPolicyAsync(Logreg, new { max_batch_size = 32, max_queue_delay_microseconds = 2000, preferred_batch_sizes = new[] { 8, 16 }, max_concurrent_runs = 1 });
            var shown = await node.GetJsonAsync($"/api/deployments/{Logreg}/1");
            Assert.Equal(32, shown.Body!["spec"]!["batching"]!["max_batch_size"]!.GetValue<int>());
            Assert.Equal(1, shown.Body!["spec"]!["batching"]!["max_concurrent_runs"]!.GetValue<int>());
            Assert.Equal("Ready", shown.Body!["state"]!.GetValue<string>());
            await SetPolicyAsync(Logreg, new { max_batch_size = 1 });
        }
        finally
        {
            stop.Cancel();
            await Task.WhenAll(load);
            await RestoreAsync(Logreg);
        }
        Assert.NotEmpty(statuses);
        Assert.All(statuses, s => Assert.Equal(200, s));
    }

    [Fact]
    public async Task A_request_whose_timeout_passes_in_the_queue_answers_504_and_a_full_queue_answers_429()
    {
        await SetPolicyAsync(Segmenter, new { max_batch_size = 1, max_queue_size = 3 });
        try
        {
            // Keep every executor busy with bulk work ("batch" priority) so that online requests must queue.
            using var stop = new CancellationTokenSource();
            var blockers = Enumerable.Range(0, 3).Select(_ => Task.Run(async () =>
            {
                var statuses = new List<HttpStatusCode>();
                while (!stop.IsCancellationRequested)
                {
                    using var r = await PostImageAsync(8, 256, new { priority = "batch" });
                    statuses.Add(r.StatusCode);
                }
                return statuses;
            })).ToArray();
            var timedOutStatuses = new List<HttpStatusCode>();
            string? timeoutError = null;
            for (var attempt = 0; attempt < 40 && timeoutError is null; attempt++)
            {
                await Task.Delay(50);
                using var timed = await node.Http.PostAsJsonAsync($"/v2/models/{Segmenter}/infer", new
                {
                    parameters = new { timeout = 1000 },
                    inputs = new[] { new { name = "image", datatype = "FP32", shape = new[] { 1, 1, 16, 16 }, data = new float[256] } },
                });
                timedOutStatuses.Add(timed.StatusCode);
                if (timed.StatusCode == HttpStatusCode.GatewayTimeout)
                {
                    timeoutError = (await NodeFixture.ReadJsonAsync(timed))!["error"]!.GetValue<string>();
                }
            }
            stop.Cancel();
            Assert.All(timedOutStatuses, s => Assert.True(s is HttpStatusCode.OK or HttpStatusCode.GatewayTimeout, $"got {(int)s}"));
            Assert.NotNull(timeoutError);
            Assert.Contains("timeout of 1000 µs", timeoutError, StringComparison.Ordinal);
            Assert.All((await Task.WhenAll(blockers)).SelectMany(s => s), s => Assert.True(s is HttpStatusCode.OK or HttpStatusCode.TooManyRequests, $"blocker got {(int)s}"));

            // More at once than running + queue can hold: some are refused with 429 and Retry-After, the rest served.
            var burst = await Task.WhenAll(Enumerable.Range(0, 24).Select(_ => PostImageAsync(8, 256)));
            Assert.All(burst, r => Assert.True(r.StatusCode is HttpStatusCode.OK or HttpStatusCode.TooManyRequests, $"got {(int)r.StatusCode}"));
            var refused = burst.Where(r => r.StatusCode == HttpStatusCode.TooManyRequests).ToArray();
            Assert.NotEmpty(refused);
            Assert.Contains(burst, r => r.StatusCode == HttpStatusCode.OK);
            Assert.Equal("1", refused[0].Headers.GetValues("Retry-After").Single());
            Assert.Contains("max_queue_size 3", (await NodeFixture.ReadJsonAsync(refused[0]))!["error"]!.GetValue<string>(), StringComparison.Ordinal);
        }
        finally
        {
            await RestoreAsync(Segmenter);
        }
    }

    [Fact]
    public async Task Bad_policies_and_bad_timeouts_are_refused_naming_the_field()
    {
        using var response = await node.Http.PutAsJsonAsync($"/api/deployments/{Logreg}/1", new { replicas = 1, batching = new { max_batch_size = 0 } });
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal("batching.max_batch_size", (await NodeFixture.ReadJsonAsync(response))!["field"]!.GetValue<string>());

        using var preferred = await node.Http.PutAsJsonAsync($"/api/deployments/{Logreg}/1", new { batching = new { max_batch_size = 8, preferred_batch_sizes = new[] { 16 } } });
        Assert.Equal("batching.preferred_batch_sizes", (await NodeFixture.ReadJsonAsync(preferred))!["field"]!.GetValue<string>());

        using var runs = await node.Http.PutAsJsonAsync($"/api/deployments/{Logreg}/1", new { batching = new { max_concurrent_runs = -1 } });
        Assert.Equal(HttpStatusCode.BadRequest, runs.StatusCode);
        Assert.Equal("batching.max_concurrent_runs", (await NodeFixture.ReadJsonAsync(runs))!["field"]!.GetValue<string>());

        var (status, body) = await node.PostJsonAsync($"/v2/models/{Logreg}/infer", Row(new float[30], new { timeout = "soon" }));
        Assert.Equal(400, status);
        Assert.Contains("parameters.timeout", body!["error"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    /// <summary>Sums one Prometheus series (all label sets of a model) from a /metrics scrape.</summary>
    private static double Scrape(string metrics, string name, string suffix, string model) =>
        metrics.Split('\n')
            .Where(l => l.StartsWith(name, StringComparison.Ordinal) && l.Contains(suffix + "{", StringComparison.Ordinal) && l.Contains($"model=\"{model}\"", StringComparison.Ordinal))
            .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));
}
