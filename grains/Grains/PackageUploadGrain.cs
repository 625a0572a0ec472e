using MedServe.Inference.Packages;
using Orleans.Concurrency;

namespace MedServe.Grains;

/// <summary>
/// Package uploads over the grain client: parses the package and hands it to <see cref="PackageImporter"/>, the one
/// path every upload takes. Stateless, so uploads run on whichever silo the client reaches, in parallel.
/// </summary>
[StatelessWorker]
internal sealed class PackageUploadGrain(PackageImporter importer, Microsoft.Extensions.Options.IOptions<LimitsOptions> limits) : Grain, IPackageUploadGrain
{
    public Task<ModelVersionInfo> UploadZipAsync(byte[] zip)
    {
        using var stream = new MemoryStream(zip, writable: false);
        return importer.RegisterAsync(ModelPackage.FromZip(stream, limits.Value.MaxPackageBytes));
    }

    public Task<ModelVersionInfo> UploadPartsAsync(byte[] manifestJson, byte[] model) =>
        importer.RegisterAsync(ModelPackage.FromParts(manifestJson, model));
}
