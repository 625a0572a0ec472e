using System.Security.Cryptography;
using System.Text;
using MedServe.Medical.Dicom;
using MedServe.Routing;
using Microsoft.Extensions.Options;

namespace MedServe.Silo.Api;

/// <summary>
/// One instance of a stored study: its de-identified file and new UIDs, and the facts routing reads from the original
/// (modality, body part, series description), which live in memory for the request only.
/// </summary>
public sealed record StoredInstance(byte[] Bytes, string StudyUid, string SeriesUid, string SopInstanceUid, string SopClassUid, int? InstanceNumber,
    string? Modality, string? BodyPart, string? SeriesDescription);

/// <summary>
/// Starts the jobs a stored study asks for: each series whose facts (modality, body part, series description, read
/// before de-identification) match a deployed model's <c>dicom_routing</c> rule becomes one job on that model, one
/// item per instance in instance order, the item id a hash of its (new) SOP Instance UID (<see cref="DicomInputs.ItemId"/>). Job ids are derived from
/// study, series and model version, so a study sent again answers the job it already started.
/// </summary>
public sealed partial class DicomStudyJobs(IGrainFactory grains, ModelRouter router, DicomImageInput images, IOptions<LimitsOptions> limits, ILogger<DicomStudyJobs> logger)
{
    public async Task<StudyJob[]> StartAsync(StudyInfo study, IReadOnlyList<StoredInstance> instances, string owner, CancellationToken cancellationToken)
    {
        var started = new List<StudyJob>();
        var candidates = await RoutedModelsAsync();
        if (candidates.Count == 0)
        {
            return [];
        }
        foreach (var series in instances.GroupBy(i => i.SeriesUid))
        {
            var first = series.First();
            var ordered = series.OrderBy(i => i.InstanceNumber ?? int.MaxValue).ThenBy(i => i.SopInstanceUid, StringComparer.Ordinal).ToArray();
            foreach (var (model, version, manifest) in candidates.Where(c => c.Manifest.DicomRouting!.Matches(first.Modality, first.BodyPart, first.SeriesDescription)))
            {
                var input = manifest.Inputs.Single(i => i.Image is not null);
                var items = new List<JobItem>();
                foreach (var instance in ordered)
                {
                    // One item per frame (a single-frame instance: one item); the instance's UIDs are already the pseudonymous ones.
                    await DicomInputs.AddItemsAsync(items, images, instance.Bytes, instance.SopInstanceUid, $"{model}:{version}", input,
                        new DicomInputLimits(limits.Value.MaxDicomPixelBytes, limits.Value.MaxTensorElements), cancellationToken);
                }
                var jobId = "study-" + Hash($"{study.StudyUid}/{series.Key}/{model}/{version}")[..24];
                var info = await grains.GetGrain<IJobGrain>(jobId).SubmitAsync(new JobSubmission
                {
                    Model = model,
                    Version = version,
                    Items = [.. items],
                    Source = "dicomweb",
                    Owner = owner,
                });
                Log.StudyJobStarted(logger, jobId, model, version, items.Count);
                started.Add(new StudyJob { JobId = info.Id, Model = model, Version = version, SeriesUid = series.Key, Items = items.Count });
            }
        }
        return [.. started];
    }

    private static string Hash(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));

    /// <summary>Models whose serving version declares a routing rule and an image input (exactly one input).</summary>
    private async Task<List<(string Model, string Version, ModelManifest Manifest)>> RoutedModelsAsync()
    {
        var found = new List<(string, string, ModelManifest)>();
        foreach (var model in await grains.GetGrain<ICatalogGrain>(0).ListModelsAsync())
        {
            InferenceRoute route;
            try
            {
                route = await router.ResolveAsync(model, null);
            }
            catch (MedServeException)
            {
                continue; // not deployed
            }
            if (await grains.GetGrain<IModelGrain>(model).GetVersionAsync(route.Version) is { Manifest.DicomRouting: not null } version
                && version.Manifest.Inputs is [{ Image: not null }])
            {
                found.Add((model, route.Version, version.Manifest));
            }
        }
        return found;
    }

    internal static partial class Log
    {
        [LoggerMessage(1602, LogLevel.Information, "A stored study's part was refused ({Kind}, at {Field})")]
        public static partial void InstanceRefused(ILogger logger, ErrorKind kind, string field);

        [LoggerMessage(1601, LogLevel.Information, "Stored study started job {JobId} on {Model}:{Version} with {Items} items")]
        public static partial void StudyJobStarted(ILogger logger, string jobId, string model, string version, int items);
    }
}
