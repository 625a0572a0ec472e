namespace MedServe.Protocol;

/// <summary>The media types the medical front ends speak.</summary>
public static class MedicalFormats
{
    public const string Dicom = "application/dicom";
    public const string DicomJson = "application/dicom+json";
    public const string FhirJson = "application/fhir+json";
}
