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

        var text = await node.Http.GetStringAsync("/metrics");

        Assert.Matches("medserve_inference_request_duration_seconds_count\\{[^}]*model=\"diabetes-linear\"[^}]*outcome=\"success\"[^}]*\\} [1-9]", text);
        Assert.Matches("medserve_inference_request_duration_seconds_count\\{[^}]*model=\"diabetes-linear\"[^}]*outcome=\"InvalidInput\"[^}]*\\} [1-9]", text);
        Assert.Matches("medserve_inference_compute_duration_seconds_bucket\\{[^}]*model=\"diabetes-linear\"", text);
        // No input value ever becomes a label.
        Assert.DoesNotContain("195.4", text, StringComparison.Ordinal);
    }
}
