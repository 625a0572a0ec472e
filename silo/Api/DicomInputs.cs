using System.Security.Cryptography;
using System.Text;
using MedServe.Dashboard.Services;
using MedServe.Medical.Dicom;
using MedServe.Routing;
using Microsoft.Extensions.Options;

namespace MedServe.Silo.Api;

/// <summary>
/// The silo's <see cref="IDicomInputs"/>: DICOM jobs and the Try-it page use the same reading as V2 infer
/// (<see cref="DicomImageInput"/>: managed parser, GDCM in worker processes, the model's image schema). Also the one
/// home of DICOM job items (<see cref="AddItemsAsync"/>, <see cref="ItemId"/>), which stored studies' jobs use too.
/// </summary>
public sealed class DicomInputs(IGrainFactory grains, ModelRouter router, DicomImageInput images, IOptions<LimitsOptions> limits) : IDicomInputs
{
    private DicomInputLimits Limits => new(limits.Value.MaxDicomPixelBytes, limits.Value.MaxTensorElements);

    public async Task<DicomJobInput> JobItemsAsync(string model, string? version, IReadOnlyList<ReadOnlyMemory<byte>> files, CancellationToken cancellationToken)
    {
        var (resolved, label, input) = await ImageInputAsync(grains, router, model, version);
        if (files.Count == 0)
        {
            throw MedServeException.Invalid("the job holds no DICOM file", "body");
        }
        // Every header first: a job whose tenth file is not DICOM, or not the model's modality, is refused before anything is decoded.
        var headers = new DicomHeader[files.Count];
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        long frames = 0;
        for (var i = 0; i < files.Count; i++)
        {
            var header = Named(files.Count, i, () =>
            {
                var h = DicomParser.Parse(files[i], Limits.MaxPixelBytes);
                DicomImageInput.Accept(h, input.Image!, label, input);
                return h.SopInstanceUid is null
                    ? throw MedServeException.Invalid("the file has no SOP Instance UID (0008,0018), which names its items", "(0008,0018)")
                    : h;
            });
            if (!seen.TryAdd(header.SopInstanceUid!, i))
            {
                throw MedServeException.Invalid($"files {seen[header.SopInstanceUid!] + 1} and {i + 1} are the same instance (SOP Instance UID (0008,0018)); send each once", "(0008,0018)");
            }
            headers[i] = header;
            frames += header.Frames;
        }
        if (frames > limits.Value.MaxJobItems)
        {
            throw new MedServeException(ErrorKind.TooLarge, $"the files hold {frames} frames, one item each; the limit is {limits.Value.MaxJobItems} per job ({LimitsOptions.Section}:MaxJobItems): split it into several jobs", "body");
        }
        var key = await grains.GetGrain<IPseudonymKeyGrain>(0).GetKeyAsync();
        var items = new List<JobItem>((int)frames);
        foreach (var f in SeriesOrder(headers))
        {
            await NamedAsync(files.Count, f, () => AddItemsAsync(items, images, files[f], DicomDeidentifier.HashUid(headers[f].SopInstanceUid!, key), label, input, Limits, cancellationToken));
        }
        return new DicomJobInput(resolved, [.. items]);
    }

    public async Task<DicomTryInput> TensorAsync(string model, string? version, ReadOnlyMemory<byte> file, CancellationToken cancellationToken)
    {
        var (resolved, label, input) = await ImageInputAsync(grains, router, model, version);
        return new DicomTryInput(resolved, (await images.BuildAsync([file], label, input, Limits, cancellationToken)).Tensor);
    }

    /// <summary>
    /// The version a DICOM request runs on, the model's label for errors, and its image input: the one input, with an image
    /// schema (none, or more inputs than the one a DICOM body can fill: 415).
    /// </summary>
    public static async Task<(string Version, string Label, TensorSpec Input)> ImageInputAsync(IGrainFactory grains, ModelRouter router, string name, string? version)
    {
        var route = await router.ResolveAsync(name, version);
        var manifest = (await grains.GetGrain<IModelGrain>(name).GetVersionAsync(route.Version)
            ?? throw MedServeException.NotFound($"model '{name}' has no version '{route.Version}'")).Manifest;
        var input = manifest.Inputs.FirstOrDefault(i => i.Image is not null)
            ?? throw MedServeException.Unsupported($"{manifest.Name}:{manifest.Version} does not take DICOM: none of its inputs declares an image schema; send V2 tensors", "Content-Type");
        if (manifest.Inputs.Length > 1)
        {
            throw MedServeException.Unsupported($"{manifest.Name}:{manifest.Version} takes {manifest.Inputs.Length} inputs; a DICOM body fills only '{input.Name}', so send V2 tensors", "Content-Type");
        }
        return (route.Version, $"{manifest.Name}:{manifest.Version}", input);
    }

    /// <summary>Files grouped by Series Instance UID (series in the order they first appear), each series in instance order.</summary>
    public static IEnumerable<int> SeriesOrder(IReadOnlyList<DicomHeader> headers) =>
        Enumerable.Range(0, headers.Count)
            .GroupBy(i => headers[i].SeriesInstanceUid ?? "", StringComparer.Ordinal)
            .SelectMany(series =>
            {
                var members = series.ToArray();
                return DicomImageInput.Order([.. members.Select(i => headers[i])]).Select(k => members[k]);
            });

    /// <summary>
    /// Adds one file's items: each frame (a single-frame instance: its one image) a one-row tensor of the model's input, its
    /// id <see cref="ItemId"/> of the instance's pseudonymous SOP Instance UID (and the frame number in a multi-frame file).
    /// </summary>
    public static async Task AddItemsAsync(List<JobItem> items, DicomImageInput images, ReadOnlyMemory<byte> file, string pseudonymousSopUid, string label,
        TensorSpec input, DicomInputLimits limits, CancellationToken cancellationToken)
    {
        var tensor = (await images.BuildAsync([file], label, input, limits, cancellationToken)).Tensor;
        var rows = (int)tensor.Shape[0];
        var rowBytes = tensor.Data.Length / rows;
        for (var row = 0; row < rows; row++)
        {
            var frame = tensor with { Shape = [1, .. tensor.Shape[1..]], Data = tensor.Data.AsSpan(row * rowBytes, rowBytes).ToArray() };
            items.Add(new JobItem(ItemId(rows == 1 ? pseudonymousSopUid : $"{pseudonymousSopUid}#{row + 1}"), [frame]));
        }
    }

    /// <summary>
    /// The item id of an instance (or frame): the first 16 hex digits of SHA-256 of its pseudonymous SOP Instance UID
    /// (<see cref="DicomDeidentifier.HashUid"/> under the cluster's pseudonym key), never the UID or anything of the
    /// patient. The same instance gets the same id in a stored study's job and in a DICOM job.
    /// </summary>
    public static string ItemId(string pseudonymousSopUid) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(pseudonymousSopUid)))[..16];

    private static T Named<T>(int count, int index, Func<T> action)
    {
        try
        {
            return action();
        }
        catch (MedServeException e) when (count > 1)
        {
            throw new MedServeException(e.Kind, $"file {index + 1}: {e.Message}", e.Field);
        }
    }

    private static async Task NamedAsync(int count, int index, Func<Task> action)
    {
        try
        {
            await action();
        }
        catch (MedServeException e) when (count > 1)
        {
            throw new MedServeException(e.Kind, $"file {index + 1}: {e.Message}", e.Field);
        }
    }
}
