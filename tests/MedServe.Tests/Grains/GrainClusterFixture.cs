using MedServe.Grains;
using MedServe.Inference.Packages;
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

    public ArtifactStore Artifacts => new(Path.Combine(DataDirectory, "artifacts"));

    public async Task InitializeAsync()
    {
        var builder = new InProcessTestClusterBuilder(1);
        builder.ConfigureSilo((_, silo) => silo
            .AddModelServing(DataDirectory, new SiloCapability("cpu", "CPUExecutionProvider", "test"))
            .AddFileGrainStorage(StorageNames.State, Path.Combine(DataDirectory, "state")));
        Cluster = builder.Build();
        await Cluster.DeployAsync();
    }

    public async Task DisposeAsync()
    {
        await Cluster.DisposeAsync();
        Directory.Delete(DataDirectory, recursive: true);
    }

    /// <summary>Registers a sample package from samples/ through the grains (as the importer does).</summary>
    public async Task<ModelVersionInfo> RegisterSampleAsync(string name)
    {
        var package = ModelPackage.FromDirectory(Path.Combine(Paths.Samples, name));
        var sha = await Artifacts.PutAsync(package.Model);
        var model = Client.GetGrain<IModelGrain>(name);
        return await model.GetVersionAsync(package.Manifest.Version)
            ?? await model.RegisterVersionAsync(package.Manifest, sha, package.Model.Length);
    }
}

[CollectionDefinition(Name)]
public sealed class GrainClusterCollection : ICollectionFixture<GrainClusterFixture>
{
    public const string Name = "grain cluster";
}
