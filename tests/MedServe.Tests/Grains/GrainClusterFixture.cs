using MedServe.Grains;
using MedServe.Inference.Runtime;
using MedServe.Tests.Support;
using Orleans.TestingHost;

namespace MedServe.Tests.Grains;

/// <summary>A TestingHost cluster of one silo with the product's grains, file storage and artifact store.</summary>
public sealed class GrainClusterFixture : IAsyncLifetime
{
    public string DataDirectory { get; } = Paths.TempDirectory("grains");

    public InProcessTestCluster Cluster { get; private set; } = null!;

    public IClusterClient Client => Cluster.Client;


    public async Task InitializeAsync()
    {
        var builder = new InProcessTestClusterBuilder(1);
        builder.ConfigureSilo((_, silo) => silo
            .AddModelServing(DataDirectory, new SiloCapability("cpu", "CPUExecutionProvider", "test"))
            .AddFileGrainStorage(StorageNames.State, Path.Combine(DataDirectory, "state"))
            .UseGrainKeyRing());
        Cluster = builder.Build();
        await Cluster.DeployAsync();
    }

    public async Task DisposeAsync()
    {
        await Cluster.DisposeAsync();
        Directory.Delete(DataDirectory, recursive: true);
    }

    /// <summary>Registers a sample package from samples/ through the grains (as the importer does).</summary>
    public Task RegisterSampleAsync(string name) => new GrainClusterHelper(Client, DataDirectory).RegisterSampleAsync(name);
}

[CollectionDefinition(Name)]
public sealed class GrainClusterCollection : ICollectionFixture<GrainClusterFixture>
{
    public const string Name = "grain cluster";
}
