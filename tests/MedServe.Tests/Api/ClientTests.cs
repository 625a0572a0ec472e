using MedServe.Client;
using MedServe.Tests.Support;

namespace MedServe.Tests.Api;

/// <summary>A .NET service calls the node through MedServe.Client (the Orleans grain client).</summary>
[Collection(NodeCollection.Name)]
public sealed class ClientTests(NodeFixture node)
{
    [Fact]
    public async Task The_grain_client_infers_with_typed_tensors_and_gets_the_same_answers_as_http()
    {
        await using var client = await MedServeClient.ConnectAsync(new MedServeClientOptions { Gateways = [$"127.0.0.1:{node.GatewayPort}"] });

        var rows = TestData.BreastCancer();
        var features = rows.SelectMany(r => r.Features).ToArray();
        var outputs = await client.InferAsync<float>("breast-cancer-logreg", "input", [rows.Count, 30], features);
        var probabilities = outputs["probabilities"].AsSpan<float>();
        for (var i = 0; i < rows.Count; i++)
        {
            Assert.InRange(Math.Abs(probabilities[i * 2 + 1] - rows[i].PBenignLogreg), 0, 1e-5);
        }

        var models = await client.ListModelsAsync();
        Assert.Contains(models, m => m.Name == "ct-mr-classifier" && m.DefaultVersion == "1");
        Assert.Equal(DeploymentState.Ready, (await client.GetDeploymentAsync("diabetes-linear", "1")).State);
    }

    [Fact]
    public async Task The_grain_client_gets_the_same_errors_as_http()
    {
        await using var client = await MedServeClient.ConnectAsync(new MedServeClientOptions { Gateways = [$"127.0.0.1:{node.GatewayPort}"] });

        var unknown = await Assert.ThrowsAsync<MedServeException>(() => client.InferAsync<float>("no-such-model", "input", [1, 30], new float[30]));
        Assert.Equal(ErrorKind.NotFound, unknown.Kind);
        var wrongShape = await Assert.ThrowsAsync<MedServeException>(() => client.InferAsync<float>("breast-cancer-logreg", "input", [1, 29], new float[29]));
        Assert.Equal(ErrorKind.InvalidInput, wrongShape.Kind);
        Assert.Contains("must have shape [-1,30]", wrongShape.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Connecting_to_a_port_where_nothing_listens_fails_clearly()
    {
        var e = await Assert.ThrowsAsync<MedServeException>(() => MedServeClient.ConnectAsync(new MedServeClientOptions { Gateways = [$"127.0.0.1:{NodeProcess.FreePort()}"], ConnectTimeout = TimeSpan.FromSeconds(2) }));
        Assert.Contains("could not connect to MedServe", e.Message, StringComparison.Ordinal);
    }
}
