namespace MedServe;

/// <summary>
/// Limits against oversized and hostile input, section <c>MedServe:Limits</c>. Each one is refused with 413 (sizes) or
/// 429 (rates) and a message that names the limit and its setting. The V2 infer body limit stays <c>MedServe:MaxInferBytes</c>
/// (<c>--max-infer-bytes</c>) and the upload limit <c>MedServe:Management:MaxUploadBytes</c>.
/// </summary>
public sealed class LimitsOptions
{
    public const string Section = "MedServe:Limits";

    /// <summary>Most tensor elements one request may carry, all inputs together (a job: per item); checked before anything is allocated.</summary>
    public long MaxTensorElements { get; set; } = 16L * 1024 * 1024;

    /// <summary>Largest package once unpacked (a zip's manifest.json and model.onnx as the zip declares them), in bytes.</summary>
    public long MaxPackageBytes { get; set; } = 512L * 1024 * 1024;

    /// <summary>Most items in one job.</summary>
    public int MaxJobItems { get; set; } = 200_000;

    /// <summary>Largest job body (CSV or JSON) in bytes.</summary>
    public long MaxJobBytes { get; set; } = 512L * 1024 * 1024;

    /// <summary>Largest body of one DICOMweb STOW-RS request (a study, or part of one), in bytes.</summary>
    public long MaxStudyBytes { get; set; } = 1024L * 1024 * 1024;

    /// <summary>Largest V2 infer body carrying DICOM (<c>application/dicom</c>, or a <c>multipart/related</c> series), in bytes.</summary>
    public long MaxDicomBytes { get; set; } = 256L * 1024 * 1024;

    /// <summary>
    /// Largest decoded pixel data of one DICOM file (Rows x Columns x frames x samples x bytes per sample, as its header
    /// declares them), in bytes: checked before anything is decoded, so a compressed file that claims huge frames is refused.
    /// </summary>
    public long MaxDicomPixelBytes { get; set; } = 512L * 1024 * 1024;

    /// <summary>Largest body of every other request (management JSON, sign-in form, metadata calls) in bytes.</summary>
    public long MaxRequestBytes { get; set; } = 1024 * 1024;

    /// <summary>V2 requests (infer, metadata, readiness) per second per key (anonymous callers: per address); 0 turns the limit off.</summary>
    public int InferPerSecond { get; set; } = 2000;

    /// <summary>V2 requests a key may send at once above its rate (the token bucket's size); 0 means one second's worth.</summary>
    public int InferBurst { get; set; }

    /// <summary>Management API requests (<c>/api/...</c>, <c>/openapi</c>) per second per key (anonymous: per address); 0 turns the limit off.</summary>
    public int ManagementPerSecond { get; set; } = 50;

    /// <summary>Management requests a key may send at once above its rate; 0 means one second's worth.</summary>
    public int ManagementBurst { get; set; }
}
