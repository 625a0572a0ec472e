using System.Collections.Concurrent;
using MedServe.Grains;
using MedServe.Inference.Runtime;
using MedServe.Tests.Support;
using Orleans.TestingHost;

namespace MedServe.Tests.Grains;

/// <summary>
/// Placement by capability on a TestingHost cluster of cpu- and gpu-tagged silos: replicas land only where
/// their accelerator is offered, spread over compatible silos, and wait (Pending) for a silo that fits.
/// </summary>
public sealed class PlacementTests : IAsyncLifetime
{
    private readonly ConcurrentDictionary<string, string> _acceleratorBySiloName = new();
    private readonly string _data = Paths.TempDirectory("placement");
    private InProcessTestCluster _cluster = null!;

    private IClusterClient Client => _cluster.Client;

    public async Task InitializeAsync()
    {
        var builder = new InProcessTestClusterBuilder(2);
        builder.ConfigureSilo((options, silo) =>
        {
            // Silos started by this class are cpu unless the test asked for the next one to be gpu.
            var accelerator = _acceleratorBySiloName.GetValueOrDefault(options.SiloName, Capabilities.Cpu);
            silo.AddModelServing(_data, new SiloCapability(accelerator, "CPUExecutionProvider", "test"), new Dictionary<string, string> { ["zone"] = options.SiloName })
                .AddFileGrainStorage(StorageNames.State, Path.Combine(_data, "state"));
        });
        _cluster = builder.Build();
        await _cluster.DeployAsync();
    }

    public async Task DisposeAsync()
    {
        await _cluster.DisposeAsync();
        Directory.Delete(_data, recursive: true);
    }

    private async Task<string> AddSiloAsync(string accelerator)
    {
        var name = $"Silo_{_cluster.Silos.Count}";
        _acceleratorBySiloName[name] = accelerator;
        var handle = await _cluster.StartAdditionalSiloAsync();
        Assert.Equal(name, handle.Name);
        return handle.SiloAddress.ToParsableString();
    }

    private async Task<string> SiloOfAsync(string key) => (await Client.GetGrain<IReplicaGrain>(key).GetStatusAsync()).Silo;

    [Fact]
    public async Task Replicas_land_only_on_silos_with_their_accelerator_and_pending_deployments_start_when_one_joins()
    {
        var cpuSilos = _cluster.Silos.Select(s => s.SiloAddress.ToParsableString()).ToHashSet();

        // No gpu silo yet: cpu replicas go to cpu silos, a gpu deployment waits.
        for (var i = 0; i < 100; i++)
        {
            Assert.Contains(await SiloOfAsync($"probe/1/{i}/cpu"), cpuSilos);
        }
        await new GrainClusterHelper(Client, _data).RegisterSampleAsync("ct-mr-classifier");
        var gpuDeployment = Client.GetGrain<IDeploymentGrain>(GrainKeys.Deployment("ct-mr-classifier", "1"));
        await gpuDeployment.DeployAsync(new DeploymentSpec { Accelerator = Capabilities.Gpu });
        var pending = await gpuDeployment.WaitSettledAsync(TimeSpan.FromMinutes(1));
        Assert.Equal(DeploymentState.Pending, pending.State);
        Assert.Contains("no gpu silo", pending.Reason, StringComparison.Ordinal);

        // A gpu silo joins: the pending deployment becomes Ready on it, on its own.
        var gpuSilo = await AddSiloAsync(Capabilities.Gpu);
        var ready = await gpuDeployment.WaitForStateAsync(DeploymentState.Ready, TimeSpan.FromMinutes(1));
        Assert.Equal(DeploymentState.Ready, ready.State);
        Assert.Equal(gpuSilo, Assert.Single(ready.Replicas).Silo);

        // Hundreds of activations: gpu never on cpu, cpu never on gpu, "any" prefers gpu.
        for (var i = 0; i < 200; i++)
        {
            Assert.Equal(gpuSilo, await SiloOfAsync($"probe/2/{i}/gpu"));
            Assert.Contains(await SiloOfAsync($"probe/2/{i}/cpu"), cpuSilos);
            Assert.Equal(gpuSilo, await SiloOfAsync($"probe/2/{i}/any"));
        }

        // The only gpu silo leaves: the deployment does not pretend to be Ready, it is Pending again (its replica has
        // nowhere to go); another gpu silo joins and it is Ready there.
        await _cluster.StopSiloAsync(_cluster.Silos.Single(s => s.SiloAddress.ToParsableString() == gpuSilo));
        var orphaned = await gpuDeployment.WaitForStateAsync(DeploymentState.Pending, TimeSpan.FromMinutes(1));
        Assert.Equal(DeploymentState.Pending, orphaned.State);
        Assert.Contains("gpu silo", orphaned.Reason, StringComparison.Ordinal);
        var secondGpuSilo = await AddSiloAsync(Capabilities.Gpu);
        var back = await gpuDeployment.WaitForStateAsync(DeploymentState.Ready, TimeSpan.FromMinutes(1));
        Assert.Equal(DeploymentState.Ready, back.State);
        Assert.Equal(secondGpuSilo, Assert.Single(back.Replicas).Silo);
    }

    [Fact]
    public async Task Replicas_spread_over_compatible_silos_and_scale_at_runtime()
    {
        // Replica i goes to the i-th compatible silo: consecutive indexes alternate over two silos.
        var placed = new List<string>();
        for (var i = 0; i < 10; i++)
        {
            placed.Add(await SiloOfAsync($"probe/3/{i}/cpu"));
        }
        Assert.All(Enumerable.Range(0, 8), i => Assert.NotEqual(placed[i], placed[i + 1]));

        var helper = new GrainClusterHelper(Client, _data);
        await helper.RegisterSampleAsync("breast-cancer-logreg");
        var deployment = Client.GetGrain<IDeploymentGrain>(GrainKeys.Deployment("breast-cancer-logreg", "1"));

        await deployment.DeployAsync(new DeploymentSpec { Replicas = 2, Accelerator = Capabilities.Cpu });
        var two = await deployment.WaitSettledAsync(TimeSpan.FromMinutes(1));
        Assert.Equal(DeploymentState.Ready, two.State);
        Assert.Equal(2, two.Replicas.Select(r => r.Silo).Distinct().Count());

        var scaling = await deployment.DeployAsync(new DeploymentSpec { Replicas = 1, Accelerator = Capabilities.Cpu });
        // A scale of a Ready deployment keeps it serving while the new set settles.
        Assert.Equal(DeploymentState.Ready, scaling.State);
        Assert.True(scaling.Updating);
        var one = await deployment.WaitSettledAsync(TimeSpan.FromMinutes(1));
        Assert.False(one.Updating);
        Assert.Equal(DeploymentState.Ready, one.State);
        Assert.Single(one.Replicas);
        var dropped = await Client.GetGrain<IReplicaGrain>(GrainKeys.Replica("breast-cancer-logreg", "1", 1, Capabilities.Cpu)).GetStatusAsync();
        Assert.False(dropped.Loaded, "the scaled-away replica freed its session");
    }
}

/// <summary>Registers sample packages straight through the grains, as the importer does.</summary>
internal sealed class GrainClusterHelper(IClusterClient client, string dataDirectory)
{
    public async Task RegisterSampleAsync(string name)
    {
        var package = MedServe.Inference.Packages.ModelPackage.FromDirectory(Path.Combine(Paths.Samples, name));
        var sha = await new MedServe.Inference.Packages.ArtifactStore(Path.Combine(dataDirectory, "artifacts")).PutAsync(package.Model);
        var model = client.GetGrain<IModelGrain>(name);
        if (await model.GetVersionAsync(package.Manifest.Version) is null)
        {
            await model.RegisterVersionAsync(package.Manifest, sha, package.Model.Length);
        }
    }
}
