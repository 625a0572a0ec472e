namespace MedServe.Medical.Dicom;

/// <summary>
/// What decoding needs to know of a DICOM Part 10 file, read by <see cref="DicomParser"/> from the file itself (never from
/// GDCM): transfer syntax, image geometry and pixel format, modality LUT, modality and the attributes that order a series.
/// Holds no patient identifiers; <see cref="SeriesInstanceUid"/> only compares files of one request and is never shown.
/// </summary>
public sealed record DicomHeader
{
    public required TransferSyntax TransferSyntax { get; init; }

    /// <summary>Modality (0008,0060), trimmed; null when absent.</summary>
    public string? Modality { get; init; }

    public int Rows { get; init; }
    public int Columns { get; init; }

    /// <summary>Number of Frames (0028,0008); 1 when absent.</summary>
    public int Frames { get; init; } = 1;

    public int SamplesPerPixel { get; init; }
    public int BitsAllocated { get; init; }
    public int BitsStored { get; init; }
    public int HighBit { get; init; }

    /// <summary>0 unsigned, 1 two's complement.</summary>
    public int PixelRepresentation { get; init; }

    /// <summary>0 colour-by-pixel (RGBRGB...), 1 colour-by-plane (RR..GG..BB..).</summary>
    public int PlanarConfiguration { get; init; }

    /// <summary>Photometric Interpretation (0028,0004), trimmed.</summary>
    public string Photometric { get; init; } = "";

    /// <summary>Rescale Slope (0028,1053); null when absent.</summary>
    public double? RescaleSlope { get; init; }

    /// <summary>Rescale Intercept (0028,1052); null when absent.</summary>
    public double? RescaleIntercept { get; init; }

    /// <summary>A Modality LUT Sequence (0028,3000) is present (a table instead of slope and intercept).</summary>
    public bool HasModalityLutSequence { get; init; }

    /// <summary>Shared or per-frame functional groups (5200,9229/9230) are present (an enhanced multi-frame object).</summary>
    public bool HasFunctionalGroups { get; init; }

    /// <summary>Instance Number (0020,0013); null when absent or not an integer.</summary>
    public int? InstanceNumber { get; init; }

    /// <summary>Image Position (Patient) (0020,0032), three values; null when absent or malformed.</summary>
    public double[]? ImagePositionPatient { get; init; }

    /// <summary>Image Orientation (Patient) (0020,0037), six values; null when absent or malformed.</summary>
    public double[]? ImageOrientationPatient { get; init; }

    /// <summary>Series Instance UID (0020,000E): compared between the files of one request, never shown or logged.</summary>
    public string? SeriesInstanceUid { get; init; }

    /// <summary>Study Instance UID (0020,000D), SOP Instance UID (0008,0018), SOP Class UID (0008,0016): identifiers, never shown or logged.</summary>
    public string? StudyInstanceUid { get; init; }

    public string? SopInstanceUid { get; init; }

    public string? SopClassUid { get; init; }

    /// <summary>Body Part Examined (0018,0015) and Series Description (0008,103E): read for routing, never kept, shown or logged.</summary>
    public string? BodyPartExamined { get; init; }

    public string? SeriesDescription { get; init; }

    /// <summary>Bytes of the Pixel Data element (the fragments' total when encapsulated).</summary>
    public long PixelDataLength { get; init; }

    /// <summary>Pixel data in fragments (a compressed transfer syntax).</summary>
    public bool Encapsulated { get; init; }

    /// <summary>Bytes the decoded pixel data takes: Rows x Columns x frames x samples x bytes per sample.</summary>
    public long DecodedBytes => (long)Rows * Columns * Frames * SamplesPerPixel * (BitsAllocated / 8);

    /// <summary>Position along the slice normal (the cross product of the orientation's row and column vectors), for ordering a series.</summary>
    public double? PositionAlongNormal
    {
        get
        {
            if (ImagePositionPatient is not { Length: 3 } p || ImageOrientationPatient is not { Length: 6 } o)
            {
                return null;
            }
            var n0 = o[1] * o[5] - o[2] * o[4];
            var n1 = o[2] * o[3] - o[0] * o[5];
            var n2 = o[0] * o[4] - o[1] * o[3];
            return p[0] * n0 + p[1] * n1 + p[2] * n2;
        }
    }
}
