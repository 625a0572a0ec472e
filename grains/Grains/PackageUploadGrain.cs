using MedServe.Inference.Packages;
using Orleans.Concurrency;

namespace MedServe.Grains;

/// <summary>
/// Package uploads over the grain client: parses the package and hands it to <see cref="PackageImporter"/>, the one
/// path every upload takes. Stateless, so uploads run on whichever silo the client reaches, in parallel.
/// </summary>
[StatelessWorker]
internal sealed class PackageUploadGrain(PackageImporter importer) : Grain, IPackageUploadGrain
{
    /// <summary>Largest package, unpacked (the management API's default upload limit).</summary>
    public const long MaxPackageBytes = 512L * 1024 * 1024;

    public Task<ModelVersionInfo> UploadZipAsync(byte[] zip)
    {
        using var stream = new MemoryStream(zip, writable: false);
        return importer.RegisterAsync(ModelPackage.FromZip(stream, MaxPackageBytes));
    }

    public Task<ModelVersionInfo> UploadPartsAsync(byte[] manifestJson, byte[] model) =>
        importer.RegisterAsync(ModelPackage.FromParts(manifestJson, model));
}
