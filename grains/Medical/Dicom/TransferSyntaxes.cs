namespace MedServe.Medical.Dicom;

/// <summary>A DICOM transfer syntax: how the data set is encoded and whether the pixel data is encapsulated (compressed).</summary>
public sealed record TransferSyntax(string Uid, string Name, bool Supported, bool Encapsulated = false, bool Implicit = false, bool BigEndian = false, bool Deflated = false);

/// <summary>
/// The transfer syntaxes MedServe decodes (through GDCM) and the ones it knows by name but does not; anything else is
/// unknown. Decoding something not supported answers 415 naming the syntax.
/// </summary>
public static class TransferSyntaxes
{
    public const string ImplicitVRLittleEndian = "1.2.840.10008.1.2";
    public const string ExplicitVRLittleEndian = "1.2.840.10008.1.2.1";
    public const string DeflatedExplicitVRLittleEndian = "1.2.840.10008.1.2.1.99";
    public const string ExplicitVRBigEndian = "1.2.840.10008.1.2.2";

    private static readonly TransferSyntax[] Known =
    [
        new(ImplicitVRLittleEndian, "Implicit VR Little Endian", true, Implicit: true),
        new(ExplicitVRLittleEndian, "Explicit VR Little Endian", true),
        new(DeflatedExplicitVRLittleEndian, "Deflated Explicit VR Little Endian", true, Deflated: true),
        new(ExplicitVRBigEndian, "Explicit VR Big Endian", true, BigEndian: true),
        new("1.2.840.10008.1.2.5", "RLE Lossless", true, Encapsulated: true),
        new("1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)", true, Encapsulated: true),
        new("1.2.840.10008.1.2.4.51", "JPEG Extended (Process 2 & 4)", true, Encapsulated: true),
        new("1.2.840.10008.1.2.4.57", "JPEG Lossless, Non-Hierarchical (Process 14)", true, Encapsulated: true),
        new("1.2.840.10008.1.2.4.70", "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14, Selection Value 1)", true, Encapsulated: true),
        new("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless", true, Encapsulated: true),
        new("1.2.840.10008.1.2.4.81", "JPEG-LS Lossy (Near-Lossless)", true, Encapsulated: true),
        new("1.2.840.10008.1.2.4.90", "JPEG 2000 Image Compression (Lossless Only)", true, Encapsulated: true),
        new("1.2.840.10008.1.2.4.91", "JPEG 2000 Image Compression", true, Encapsulated: true),
        // Known, not decoded here.
        new("1.2.840.10008.1.2.1.98", "Encapsulated Uncompressed Explicit VR Little Endian", false, Encapsulated: true),
        new("1.2.840.10008.1.2.4.92", "JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only)", false, Encapsulated: true),
        new("1.2.840.10008.1.2.4.93", "JPEG 2000 Part 2 Multi-component Image Compression", false, Encapsulated: true),
        new("1.2.840.10008.1.2.4.94", "JPIP Referenced", false),
        new("1.2.840.10008.1.2.4.95", "JPIP Referenced Deflate", false),
        new("1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level", false, Encapsulated: true),
        new("1.2.840.10008.1.2.4.101", "MPEG2 Main Profile / High Level", false, Encapsulated: true),
        new("1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264 High Profile / Level 4.1", false, Encapsulated: true),
        new("1.2.840.10008.1.2.4.103", "MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1", false, Encapsulated: true),
        new("1.2.840.10008.1.2.4.104", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video", false, Encapsulated: true),
        new("1.2.840.10008.1.2.4.105", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video", false, Encapsulated: true),
        new("1.2.840.10008.1.2.4.106", "MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2", false, Encapsulated: true),
        new("1.2.840.10008.1.2.4.107", "HEVC/H.265 Main Profile / Level 5.1", false, Encapsulated: true),
        new("1.2.840.10008.1.2.4.108", "HEVC/H.265 Main 10 Profile / Level 5.1", false, Encapsulated: true),
        new("1.2.840.10008.1.2.4.110", "JPEG XL Lossless", false, Encapsulated: true),
        new("1.2.840.10008.1.2.4.111", "JPEG XL JPEG Recompression", false, Encapsulated: true),
        new("1.2.840.10008.1.2.4.112", "JPEG XL", false, Encapsulated: true),
        new("1.2.840.10008.1.2.4.201", "High-Throughput JPEG 2000 Image Compression (Lossless Only)", false, Encapsulated: true),
        new("1.2.840.10008.1.2.4.202", "High-Throughput JPEG 2000 with RPCL Options Image Compression (Lossless Only)", false, Encapsulated: true),
        new("1.2.840.10008.1.2.4.203", "High-Throughput JPEG 2000 Image Compression", false, Encapsulated: true),
        new("1.2.840.10008.1.2.4.204", "JPIP HTJ2K Referenced", false),
        new("1.2.840.10008.1.2.4.205", "JPIP HTJ2K Referenced Deflate", false),
        new("1.2.840.10008.1.2.6.1", "RFC 2557 MIME encapsulation", false),
        new("1.2.840.10008.1.2.6.2", "XML Encoding", false),
        new("1.2.840.10008.1.2.7.1", "SMPTE ST 2110-20 Uncompressed Progressive Active Video", false),
        new("1.2.840.10008.1.2.7.2", "SMPTE ST 2110-20 Uncompressed Interlaced Active Video", false),
        new("1.2.840.10008.1.2.7.3", "SMPTE ST 2110-30 PCM Digital Audio", false),
        .. RetiredJpeg(),
    ];

    private static readonly Dictionary<string, TransferSyntax> ByUid = Known.ToDictionary(t => t.Uid, StringComparer.Ordinal);

    private static IEnumerable<TransferSyntax> RetiredJpeg()
    {
        // 1.2.840.10008.1.2.4.52-56 and 58-66: retired JPEG processes; 57 and 70 (lossless) are above.
        foreach (var n in Enumerable.Range(52, 15))
        {
            if (n != 57)
            {
                yield return new($"1.2.840.10008.1.2.4.{n}", $"JPEG (retired process, 1.2.840.10008.1.2.4.{n})", false, Encapsulated: true);
            }
        }
    }

    /// <summary>The syntaxes that decode, for error messages and docs.</summary>
    public static IEnumerable<TransferSyntax> Supported => Known.Where(t => t.Supported);

    /// <summary>The syntax of <paramref name="uid"/>, or null when it is not one MedServe knows.</summary>
    public static TransferSyntax? Find(string uid) => ByUid.GetValueOrDefault(uid);

    /// <summary>A syntactically valid UID (digits and dots, at most 64 characters): safe to name in an error.</summary>
    public static bool IsUid(string value) =>
        value.Length is > 0 and <= 64 && value[0] != '.' && value[^1] != '.' && !value.Contains("..", StringComparison.Ordinal)
        && value.All(c => c is (>= '0' and <= '9') or '.');

    /// <summary>The transfer syntax of <paramref name="uid"/>; unknown or undecodable ones are 415 naming it.</summary>
    public static TransferSyntax Require(string uid)
    {
        if (Find(uid) is { } ts)
        {
            return ts.Supported
                ? ts
                : throw MedServeException.Unsupported($"transfer syntax {ts.Uid} ({ts.Name}) is not supported; supported: {SupportedText}", "(0002,0010)");
        }
        throw IsUid(uid)
            ? MedServeException.Unsupported($"transfer syntax {uid} is not one MedServe knows; supported: {SupportedText}", "(0002,0010)")
            : MedServeException.Invalid("Transfer Syntax UID (0002,0010) is not a valid UID", "(0002,0010)");
    }

    private static string SupportedText => string.Join(", ", Supported.Select(t => t.Name));
}
