using MedServe.Grains.Storage;
using MedServe.Inference.Packages;
using MedServe.Inference.Runtime;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime.Hosting;

namespace MedServe.Grains;

/// <summary>Registers what the grains need on a silo.</summary>
public static class GrainsHosting
{
    /// <summary>Artifact store under <paramref name="dataDirectory"/>/artifacts and ONNX Runtime options.</summary>
    public static ISiloBuilder AddModelServing(this ISiloBuilder silo, string dataDirectory, RuntimeOptions runtime)
    {
        silo.Services.AddSingleton(new ArtifactStore(Path.Combine(dataDirectory, "artifacts")));
        silo.Services.AddSingleton(Microsoft.Extensions.Options.Options.Create(runtime));
        silo.Services.AddSingleton<PackageImporter>();
        return silo;
    }

    /// <summary>Grain state as JSON files under <paramref name="directory"/> (the embedded node's store).</summary>
    public static ISiloBuilder AddFileGrainStorage(this ISiloBuilder silo, string name, string directory)
    {
        silo.Services.AddGrainStorage(name, (_, _) => new FileGrainStorage(directory));
        return silo;
    }
}
