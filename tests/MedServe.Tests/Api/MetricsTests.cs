using System.Text.RegularExpressions;
using MedServe.Tests.Support;

namespace MedServe.Tests.Api;

/// <summary>Latency and outcomes are scraped at /metrics, labelled by model and version, never by input.</summary>
[Collection(NodeCollection.Name)]
public sealed class MetricsTests(NodeFixture node)
{
    [Fact]
    public async Task Requests_and_compute_time_appear_as_histograms_labelled_by_model()
    {
        var request = new { inputs = new[] { new { name = "input", datatype = "FP32", shape = new[] { 1, 10 }, data = new[] { 61, 1, 25.8, 90, 280, 195.4, 55, 5, 4.9972, 90 } } } };
        Assert.Equal(200, (await node.PostJsonAsync("/v2/models/diabetes-linear/infer", request)).Status);
        Assert.Equal(400, (await node.PostJsonAsync("/v2/models/diabetes-linear/infer", new { inputs = Array.Empty<object>() })).Status);

        var success = new Regex("medserve_inference_request_duration_seconds_count\\{[^}]*model=\"diabetes-linear\"[^}]*outcome=\"success\"[^}]*\\} [1-9]");
        var invalid = new Regex("medserve_inference_request_duration_seconds_count\\{[^}]*model=\"diabetes-linear\"[^}]*outcome=\"InvalidInput\"[^}]*\\} [1-9]");
        var compute = new Regex("medserve_inference_compute_duration_seconds_bucket\\{[^}]*model=\"diabetes-linear\"");
        var text = await ScrapeUntilAsync(success, invalid, compute);

        Assert.Matches(success, text);
        Assert.Matches(invalid, text);
        Assert.Matches(compute, text);
        // No input value ever becomes a label.
        Assert.DoesNotContain("195.4", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_request_that_fails_before_routing_makes_no_series_of_its_callers_names()
    {
        // Bodies that do not parse are refused before the model is looked up: the name and version in their paths are
        // only what the caller wrote, and must not become labels (one series per made-up name would grow without end).
        var name = $"made-up-{Guid.NewGuid():N}";
        var version = $"v{Guid.NewGuid():N}"[..20];
        Assert.Equal(400, (await node.PostJsonAsync($"/v2/models/{name}/infer", new { inputs = Array.Empty<object>() })).Status);
        Assert.Equal(400, (await node.PostJsonAsync($"/v2/models/diabetes-linear/versions/{version}/infer", new { inputs = Array.Empty<object>() })).Status);

        var unknown = new Regex("medserve_inference_request_duration_seconds_count\\{[^}]*model=\"\\(unknown\\)\"[^}]*outcome=\"InvalidInput\"[^}]*\\} ([0-9]+)");
        var text = await ScrapeUntilAsync(unknown);
        Assert.Matches(unknown, text);
        Assert.DoesNotContain(name, text, StringComparison.Ordinal);
        Assert.DoesNotContain(version, text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_infer_request_refused_before_the_endpoint_is_counted_by_ASP_NET_Core()
    {
        using var anonymous = new HttpClient { BaseAddress = node.Http.BaseAddress };
        using var refused = await anonymous.PostAsync("/v2/models/diabetes-linear/infer", new StringContent("{}", System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(401, (int)refused.StatusCode);

        // The inference histogram only sees requests that reach the endpoint; a 401 (or 403, 429) shows here.
        var refusedCount = new Regex("http_server_request_duration_seconds_count\\{[^}]*http_response_status_code=\"401\"[^}]*http_route=\"/v2/models/\\{name\\}/infer\"[^}]*\\} [1-9]");
        Assert.Matches(refusedCount, await ScrapeUntilAsync(refusedCount));
    }

    /// <summary>
    /// The exporter answers a scrape from its cache for a moment (another test's scrape may be that recent): scrapes
    /// until every pattern is there, for at most ten seconds, and returns the last text.
    /// </summary>
    private async Task<string> ScrapeUntilAsync(params Regex[] patterns)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        var text = await node.Http.GetStringAsync("/metrics");
        while (!patterns.All(p => p.IsMatch(text)) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
            text = await node.Http.GetStringAsync("/metrics");
        }
        return text;
    }
}
