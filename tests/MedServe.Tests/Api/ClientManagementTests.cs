using MedServe.Client;
using MedServe.Tests.Support;

namespace MedServe.Tests.Api;

/// <summary>MedServe.Client's management calls (push, deploy, scale, status, silos) against the real node, over the grain client.</summary>
[Collection(NodeCollection.Name)]
public sealed class ClientManagementTests(NodeFixture node)
{
    private static readonly OnnxBuilder.Io Vector = new("x", TensorDatatype.FP32, [null, 4]);

    private Task<MedServeClient> ConnectAsync() =>
        MedServeClient.ConnectAsync(new MedServeClientOptions { Gateways = [$"127.0.0.1:{node.GatewayPort}"] });

    [Fact]
    public async Task A_zip_pushed_through_the_client_deploys_infers_scales_keeping_its_spec_and_undeploys()
    {
        await using var client = await ConnectAsync();
        var pushed = await client.PushAsync(CliRun.Zip(Manifests.Identity("client-echo", "1", [Vector]), OnnxBuilder.Identity(Vector)));
        Assert.Equal("client-echo", pushed.Manifest.Name);
        Assert.Equal(64, pushed.Sha256.Length);
        Assert.Equal("1", Assert.Single((await client.GetModelAsync("client-echo")).Versions).Manifest.Version);

        var deployed = await client.DeployAsync("client-echo", "1", new DeploymentSpec { Accelerator = "cpu" });
        Assert.Equal(DeploymentState.Ready, deployed.State);
        var outputs = await client.InferAsync<float>("client-echo", "x", [1, 4], new float[] { 1, 2, 3, 4.5f });
        Assert.Equal([1, 2, 3, 4.5f], outputs["x_out"].AsSpan<float>().ToArray());

        var scaled = await client.ScaleAsync("client-echo", "1", 2);
        Assert.Equal(DeploymentState.Ready, scaled.State);
        Assert.Equal(2, scaled.Replicas.Length);
        Assert.Equal("cpu", scaled.Spec.Accelerator);
        Assert.Contains(await client.ListDeploymentsAsync(), d => d.Model == "client-echo" && d.Spec.Replicas == 2);
        var silo = Assert.Single(await client.ListSilosAsync());
        Assert.Equal("cpu", silo.Accelerator);
        Assert.Contains("client-echo/1/1/cpu", silo.Replicas);

        Assert.Equal(DeploymentState.Unloaded, (await client.UndeployAsync("client-echo", "1")).State);
        Assert.DoesNotContain((await client.ListSilosAsync())[0].Replicas, r => r.StartsWith("client-echo/", StringComparison.Ordinal));
        var notDeployed = await Assert.ThrowsAsync<MedServeException>(() => client.ScaleAsync("client-echo", "1", 3));
        Assert.Equal(ErrorKind.NotFound, notDeployed.Kind);
    }

    [Fact]
    public async Task Bad_packages_pushed_through_the_client_are_invalid_input_naming_the_field()
    {
        await using var client = await ConnectAsync();
        var notZip = await Assert.ThrowsAsync<MedServeException>(() => client.PushAsync("not a zip"u8.ToArray()));
        Assert.Equal(ErrorKind.InvalidInput, notZip.Kind);
        Assert.Equal("package", notZip.Field);

        var manifest = Manifests.Identity("client-bad", "1", [Vector]);
        ((Dictionary<string, object?>[])manifest["inputs"]!)[0]["name"] = "features";
        manifest.Remove("validation");
        var mismatch = await Assert.ThrowsAsync<MedServeException>(() => client.PushAsync(CliRun.Zip(manifest, OnnxBuilder.Identity(Vector))));
        Assert.Equal(ErrorKind.InvalidInput, mismatch.Kind);
        Assert.Equal("manifest.inputs[0].name", mismatch.Field);
        await Assert.ThrowsAsync<MedServeException>(() => client.GetModelAsync("client-bad"));

        var missing = await Assert.ThrowsAsync<MedServeException>(() => client.GetDeploymentAsync("diabetes-linear", "99"));
        Assert.Equal(ErrorKind.NotFound, missing.Kind);
    }
}
