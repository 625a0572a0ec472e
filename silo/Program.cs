using MedServe.Medical.Dicom;
using MedServe.Silo.Hosting;

// A DICOM decoder worker (GDCM, native code, runs in processes of its own): see DicomDecoderPool.
if (args is [DicomDecoderWorker.Switch])
{
    return DicomDecoderWorker.Run(Console.OpenStandardInput(), Console.OpenStandardOutput());
}

// The embedded node: one silo serving the V2 API, the management API and the sample models.
var app = MedServeNode.Build(args);
app.Run();
return 0;
