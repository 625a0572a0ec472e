using MedServe.Inference.Packages;
using Microsoft.Extensions.Logging;

namespace MedServe.Grains;

/// <summary>
/// Accepts a model package into the registry: checks the manifest against the ONNX graph, stores the
/// artifact by SHA-256, registers the version. One path for HTTP uploads and directory imports.
/// </summary>
public sealed class PackageImporter(IGrainFactory grains, ArtifactStore artifacts, ArtifactSharing sharing, ILogger<PackageImporter> logger)
{
    /// <summary>Registers a package; a version that exists is a conflict.</summary>
    public async Task<ModelVersionInfo> RegisterAsync(ModelPackage package, CancellationToken cancellationToken = default)
    {
        // ONNX Runtime parses the graph: CPU work, off the request thread's grain context.
        await Task.Run(() => PackageInspector.Inspect(package), cancellationToken);
        var sha = await artifacts.PutAsync(package.Model, cancellationToken);
        if (sharing.Enabled)
        {
            await grains.GetGrain<IArtifactGrain>(sha).PutAsync(package.Model);
        }
        return await grains.GetGrain<IModelGrain>(package.Manifest.Name).RegisterVersionAsync(package.Manifest, sha, package.Model.Length);
    }

    /// <summary>
    /// Imports every package directory under <paramref name="directory"/> that is not registered yet and deploys it.
    /// A version registered before is left as it is (it may have been undeployed on purpose).
    /// </summary>
    public async Task<int> ImportDirectoryAsync(string directory, CancellationToken cancellationToken = default)
    {
        var imported = 0;
        var candidates = File.Exists(Path.Combine(directory, ModelPackage.ManifestFile))
            ? [directory]
            : Directory.GetDirectories(directory).Order(StringComparer.Ordinal).ToArray();
        foreach (var dir in candidates)
        {
            if (!File.Exists(Path.Combine(dir, ModelPackage.ManifestFile)))
            {
                continue;
            }
            try
            {
                var package = ModelPackage.FromDirectory(dir);
                var existing = await grains.GetGrain<IModelGrain>(package.Manifest.Name).GetVersionAsync(package.Manifest.Version);
                if (existing is not null)
                {
                    if (existing.Sha256 != ArtifactStore.Hash(package.Model))
                    {
                        ImportLog.DifferentContent(logger, package.Manifest.Name, package.Manifest.Version, dir);
                    }
                    continue;
                }
                await RegisterAsync(package, cancellationToken);
                await grains.GetGrain<IDeploymentGrain>(GrainKeys.Deployment(package.Manifest.Name, package.Manifest.Version))
                    .DeployAsync(new DeploymentSpec());
                imported++;
            }
            catch (MedServeException e)
            {
                ImportLog.Rejected(logger, dir, e.Message);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                ImportLog.Rejected(logger, dir, $"{e.GetType().Name}: {e.Message}");
            }
        }
        return imported;
    }
}

/// <summary>Whether artifacts are also kept by the cluster (cluster mode: silos share no filesystem).</summary>
public sealed record ArtifactSharing(bool Enabled);

internal static partial class ImportLog
{
    [LoggerMessage(1301, LogLevel.Warning, "Package {Directory} was not imported: {Reason}")]
    public static partial void Rejected(ILogger logger, string directory, string reason);

    [LoggerMessage(1302, LogLevel.Warning, "{Model}:{Version} in {Directory} differs from the registered version of that name; kept the registered one")]
    public static partial void DifferentContent(ILogger logger, string model, string version, string directory);
}
