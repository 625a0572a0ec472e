using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using MedServe.Tests.Support;

namespace MedServe.Tests.Processes;

/// <summary>The embedded node as a real process keeps its models and deployments across restarts and crashes.</summary>
public sealed class RestartTests
{
    private static readonly OnnxBuilder.Io Vector = new("x", TensorDatatype.FP32, [null, 3]);

    [Fact]
    public async Task Models_and_deployments_survive_a_graceful_restart_and_a_kill_9()
    {
        var data = Paths.TempDirectory("restart");
        int http = NodeProcess.FreePort(), silo = NodeProcess.FreePort(), gateway = NodeProcess.FreePort();
        try
        {
            await using (var node = await NodeProcess.StartAsync(data, Paths.Samples, http, silo, gateway))
            {
                // An uploaded model, deployed; a sample undeployed on purpose: both choices must persist.
                using var form = new MultipartFormDataContent
                {
                    { new ByteArrayContent(JsonSerializer.SerializeToUtf8Bytes(Manifests.Identity("kept", "1", [Vector]))), "manifest", "manifest.json" },
                    { new ByteArrayContent(OnnxBuilder.Identity(Vector)), "model", "model.onnx" },
                };
                Assert.Equal(201, (int)(await node.Http.PostAsync("/api/models?deploy=true", form)).StatusCode);
                Assert.Equal("Ready", (await NodeFixture.SuccessJsonAsync(node.Http.PutAsync("/api/deployments/kept/1?wait=true", null)))["state"]!.GetValue<string>());
                Assert.Equal("Unloaded", (await NodeFixture.SuccessJsonAsync(node.Http.DeleteAsync("/api/deployments/ct-bone-segmenter/1")))["state"]!.GetValue<string>());
                await AssertServesAsync(node);
                await node.StopGracefullyAsync();
            }

            await using (var node = await NodeProcess.StartAsync(data, Paths.Samples, http, silo, gateway))
            {
                await AssertStateKeptAsync(node);
                await node.KillAsync();
            }

            await using (var node = await NodeProcess.StartAsync(data, Paths.Samples, http, silo, gateway))
            {
                await AssertStateKeptAsync(node);
                // The import at start registered nothing twice: each sample appears once.
                Assert.Contains("Imported 0 new package(s)", node.Output, StringComparison.Ordinal);
            }
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }
    }

    private static async Task AssertStateKeptAsync(NodeProcess node)
    {
        var deployments = (await NodeFixture.SuccessJsonAsync(node.Http.GetAsync("/api/deployments"))).AsArray();
        var states = deployments.ToDictionary(d => d!["model"]!.GetValue<string>(), d => d!["state"]!.GetValue<string>());
        Assert.Equal("Ready", states["kept"]);
        Assert.Equal("Ready", states["breast-cancer-logreg"]);
        Assert.Equal("Ready", states["ct-mr-classifier"]);
        Assert.False(states.ContainsKey("ct-bone-segmenter"), "an undeployed sample stays undeployed");
        var models = (await NodeFixture.SuccessJsonAsync(node.Http.GetAsync("/api/models"))).AsArray().Select(m => m!["name"]!.GetValue<string>()).ToList();
        Assert.Contains("kept", models);
        Assert.Contains("ct-bone-segmenter", models);
        await AssertServesAsync(node);
    }

    private static async Task AssertServesAsync(NodeProcess node)
    {
        using var response = await node.Http.PostAsJsonAsync("/v2/models/kept/infer", new
        {
            inputs = new[] { new { name = "x", datatype = "FP32", shape = new[] { 1, 3 }, data = new[] { 1.5, 2.5, 3.5 } } },
        });
        var body = await NodeFixture.ReadJsonAsync(response);
        Assert.True(response.IsSuccessStatusCode, body?.ToJsonString());
        Assert.Equal([1.5, 2.5, 3.5], body!["outputs"]![0]!["data"]!.AsArray().Select(v => v!.GetValue<double>()));
    }
}
