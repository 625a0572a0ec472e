using System.Globalization;
using MedServe.Dashboard.Management;
using MedServe.Medical.Dicom;
using MedServe.Routing;

namespace MedServe.Silo.Api;

public static partial class V2Endpoints
{
    /// <summary>
    /// V2 infer with a DICOM body: resolves the version as every request does, takes the model's image input (its
    /// <see cref="ImageSchema"/>; none is 415), turns the file or series into that input's tensor
    /// (<see cref="DicomImageInput"/>: checked, decoded in a worker process, one row per frame or slice in instance order)
    /// and sends it through the same router. Returns the answer and, for a series, the part each row came from.
    /// </summary>
    private static async Task<(InferenceResponse Response, string? RowParts)> InferDicomAsync(string name, string? version, DicomContent.Kind kind, string? boundary,
        ReadOnlyMemory<byte> body, HttpContext context, ModelRouter router, LimitsOptions limits)
    {
        var grains = context.RequestServices.GetRequiredService<IGrainFactory>();
        var (resolved, label, input) = await DicomInputs.ImageInputAsync(grains, router, name, version);
        IReadOnlyList<ReadOnlyMemory<byte>> files = kind == DicomContent.Kind.Series ? DicomContent.Split(body, boundary!) : [body];
        var builder = context.RequestServices.GetRequiredService<DicomImageInput>();
        var tensor = await builder.BuildAsync(files, label, input,
            new DicomInputLimits(limits.MaxDicomPixelBytes, limits.MaxTensorElements), context.RequestAborted);
        var response = await router.InferAsync(name, resolved, new InferenceRequest([tensor.Tensor]));
        var rowParts = kind == DicomContent.Kind.Series
            ? string.Join(',', tensor.RowFiles.Select(f => (f + 1).ToString(CultureInfo.InvariantCulture)))
            : null;
        return (response, rowParts);
    }
}
