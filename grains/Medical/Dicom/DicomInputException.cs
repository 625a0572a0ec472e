namespace MedServe.Medical.Dicom;

/// <summary>DICOM input MedServe cannot take; the message names the problem (a tag, a transfer syntax), never a value.</summary>
public sealed class DicomInputException(string message, bool unsupportedMediaType = false) : Exception(message)
{
    /// <summary>True when the data is DICOM but encoded in a way MedServe does not decode (HTTP 415).</summary>
    public bool UnsupportedMediaType { get; } = unsupportedMediaType;
}
